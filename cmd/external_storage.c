/* The --external_storage flags and the composition over the object store (external_storage.h). */
#include "cmd/external_storage.h"

#include <string.h>

external_flags external_flags_default(unsigned uses)
{
	return (external_flags){.uses = uses, .url = "", .endpoint = "", .region = "", .addressing = "auto",
	                        .gcs_credentials_file = "", .write_through = "sync", .ac_restore = "lazy"};
}

static const char *url_help(unsigned uses)
{
	switch (uses) {
	case EXTERNAL_CAS:
		return "object store behind the CAS (blobs written and read through): s3://BUCKET/PREFIX, "
		       "gs://BUCKET/PREFIX or file:///DIR";
	case EXTERNAL_AC:
		return "object store the action cache is backed up to and restored from: s3://BUCKET/PREFIX, "
		       "gs://BUCKET/PREFIX or file:///DIR";
	default:
		return "object store behind the CAS and the action cache: s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or "
		       "file:///DIR";
	}
}

size_t external_flags_table(external_flags *f, cairn_flag *out)
{
	size_t n = 0;
	out[n++] = (cairn_flag){"external_storage", CAIRN_FLAG_STRING, &f->url, url_help(f->uses)};
	out[n++] = (cairn_flag){"s3_endpoint", CAIRN_FLAG_STRING, &f->endpoint,
	                        "object store endpoint URL (default: AWS for s3://, https://storage.googleapis.com for "
	                        "gs://)"};
	out[n++] = (cairn_flag){"s3_region", CAIRN_FLAG_STRING, &f->region,
	                        "S3 region (default us-east-1). Keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
	                        "(and AWS_SESSION_TOKEN), else for s3:// from EC2 instance metadata; for gs:// such HMAC "
	                        "keys select GCS's XML API"};
	out[n++] = (cairn_flag){"s3_addressing", CAIRN_FLAG_STRING, &f->addressing,
	                        "auto (path-style with --s3_endpoint, else virtual-hosted), path or virtual"};
	out[n++] = (cairn_flag){"gcs_credentials_file", CAIRN_FLAG_STRING, &f->gcs_credentials_file,
	                        "gs:// without HMAC keys uses GCS's JSON API with OAuth tokens from this service-account "
	                        "key file (default: GOOGLE_APPLICATION_CREDENTIALS, else the GCE metadata server)"};
	if (f->uses & EXTERNAL_CAS)
		out[n++] = (cairn_flag){"write_through", CAIRN_FLAG_STRING, &f->write_through,
		                        "sync: an upload is acknowledged once the object store has it; async: after the "
		                        "local write, with a backlog on disk that is flushed in the background"};
	if (f->uses & EXTERNAL_AC)
		out[n++] = (cairn_flag){"ac_restore", CAIRN_FLAG_STRING, &f->ac_restore,
		                        "how the action cache comes back from the object store: lazy (each entry on its "
		                        "first miss) or eager (also all of it at start, in the background, as far as the "
		                        "action cache's memory allows)"};
	return n;
}

size_t external_flags_after(const cairn_flag *own, size_t n, external_flags *f, cairn_flag *out)
{
	memcpy(out, own, n * sizeof *own);
	return n + external_flags_table(f, out + n);
}

cairn_status external_flags_check(const external_flags *f)
{
	if (strcmp(f->write_through, "sync") && strcmp(f->write_through, "async"))
		return cairn_err(CAIRN_INVALID_ARGUMENT, "--write_through must be sync or async");
	if (strcmp(f->addressing, "auto") && strcmp(f->addressing, "path") && strcmp(f->addressing, "virtual"))
		return cairn_err(CAIRN_INVALID_ARGUMENT, "--s3_addressing must be auto, path or virtual");
	if (strcmp(f->ac_restore, "lazy") && strcmp(f->ac_restore, "eager"))
		return cairn_err(CAIRN_INVALID_ARGUMENT, "--ac_restore must be lazy or eager");
	return cairn_ok();
}

bool external_flags_given(const external_flags *f) { return f->url[0] != 0; }

static const char *or_null(const char *s) { return s[0] ? s : NULL; }

cairn_status external_open(const external_flags *f, cachefs *fs, external *x)
{
	*x = (external){0};
	if (!external_flags_given(f))
		return cairn_ok();
	bool path_style = !strcmp(f->addressing, "path") || (!strcmp(f->addressing, "auto") && f->endpoint[0]);
	objstore_config oc = {.url = f->url,
	                      .endpoint = or_null(f->endpoint),
	                      .region = or_null(f->region),
	                      .gcs_credentials_file = or_null(f->gcs_credentials_file),
	                      .path_style = path_style};
	cairn_status st = objstore_open(&oc, &x->os);
	if (cairn_is_ok(&st) && (f->uses & EXTERNAL_CAS))
		st = cachefs_through_new(fs, x->os, !strcmp(f->write_through, "async"), &x->through);
	if (!cairn_is_ok(&st)) {
		objstore_close(x->os);
		*x = (external){0};
		return st;
	}
	if (f->uses & EXTERNAL_AC)
		x->backup = backup_new(x->os, 10000);
	LOG_INFO("external", "external storage url=%s write_through=%s ac_backup=%s", f->url,
	         x->through ? f->write_through : "none", x->backup ? "on" : "off");
	return st;
}

blobstore *external_cas(external *x, cachefs *fs)
{
	return x->through ? cachefs_through_blobstore(x->through) : cachefs_blobstore(fs);
}

gateway_ac_backing external_ac_backing(external *x)
{
	return x->backup ? backup_backing(x->backup) : (gateway_ac_backing){0};
}

void external_restore(const external_flags *f, external *x, gateway *g)
{
	if (x->backup && !strcmp(f->ac_restore, "eager"))
		backup_restore(x->backup, g);
}

void external_close_backup(external *x)
{
	backup_free(x->backup);
	x->backup = NULL;
}

void external_close(external *x)
{
	external_close_backup(x);
	cachefs_through_free(x->through);
	objstore_close(x->os);
	*x = (external){0};
}
