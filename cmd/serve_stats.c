/* cairn serve's counters (see serve_stats.h). */
#include "cmd/serve_stats.h"

#define U(x) ((unsigned long long)(x))

/* One reading of every counter. */
typedef struct counters {
	cachefs_stats cs;
	cachefs_through_stats ts; /* these three with external storage only */
	objstore_stats os;
	backup_stats bs;
} counters;

static void read_counters(const serve_stats *s, counters *c)
{
	*c = (counters){0};
	cachefs_get_stats(s->fs, &c->cs);
	if (!s->os)
		return;
	cachefs_through_get_stats(s->through, &c->ts);
	objstore_get_stats(s->os, &c->os);
	backup_get_stats(s->backup, &c->bs);
}

static void collect_cas(const cachefs_stats cs, metrics_out *o)
{
	metrics_gauge(o, "cairn_cas_blobs", "Blobs held by the local CAS.", (double)cs.blobs);
	metrics_gauge(o, "cairn_cas_bytes", "Bytes of the blobs held by the local CAS.", (double)cs.bytes);
	metrics_gauge(o, "cairn_cas_reserved_bytes", "Bytes reserved by uploads and read-through downloads in flight.",
	              (double)cs.reserved);
	metrics_counter(o, "cairn_cas_evicted_blobs_total", "Blobs evicted from the local CAS.", cs.evicted_blobs);
	metrics_counter(o, "cairn_cas_evicted_bytes_total", "Bytes evicted from the local CAS.", cs.evicted_bytes);
	metrics_counter(o, "cairn_cas_rejected_writes_total",
	                "Uploads and read-throughs refused by the hard limit or a full disk (RESOURCE_EXHAUSTED).",
	                cs.rejected_writes);
	metrics_counter(o, "cairn_cas_corrupt_blobs_total",
	                "Blobs dropped from the local CAS because their bytes on disk no longer matched their digest.",
	                cs.corrupt_blobs);
}

static void collect_external(const counters *c, metrics_out *o)
{
	const cachefs_through_stats ts = c->ts;
	const objstore_stats os = c->os;
	const backup_stats bs = c->bs;
	metrics_counter(o, "cairn_write_through_uploaded_blobs_total", "Blobs written through to the object store.",
	                ts.uploaded);
	metrics_counter(o, "cairn_write_through_skipped_blobs_total",
	                "Blobs not uploaded because the object store had them already.", ts.skipped);
	metrics_gauge(o, "cairn_write_through_backlog_blobs",
	              "Blobs acknowledged (async write-through) and not yet in the object store.", (double)ts.backlog);
	metrics_counter(o, "cairn_write_through_failures_total",
	                "Write-through and read-through transfers that failed after their retries.", ts.failures);
	metrics_counter(o, "cairn_read_through_fetched_blobs_total", "Blobs read back through from the object store.",
	                ts.fetched);
	metrics_counter(o, "cairn_read_through_refused_blobs_total",
	                "Object-store copies refused because their bytes did not match their digest.", ts.refused);

	metrics_family(o, "cairn_object_store_requests_total", "counter", "Object-store calls, by operation.");
	metrics_sample(o, "cairn_object_store_requests_total", "op=\"put\"", (double)os.puts);
	metrics_sample(o, "cairn_object_store_requests_total", "op=\"get\"", (double)os.gets);
	metrics_sample(o, "cairn_object_store_requests_total", "op=\"head\"", (double)os.heads);
	metrics_sample(o, "cairn_object_store_requests_total", "op=\"delete\"", (double)os.deletes);
	metrics_sample(o, "cairn_object_store_requests_total", "op=\"list\"", (double)os.lists);
	metrics_family(o, "cairn_object_store_bytes_total", "counter", "Bytes moved to and from the object store.");
	metrics_sample(o, "cairn_object_store_bytes_total", "direction=\"up\"", (double)os.bytes_up);
	metrics_sample(o, "cairn_object_store_bytes_total", "direction=\"down\"", (double)os.bytes_down);
	metrics_counter(o, "cairn_object_store_retries_total", "Object-store requests sent again after a failure.",
	                os.retries);
	metrics_counter(o, "cairn_object_store_failures_total", "Object-store calls that failed after their retries.",
	                os.failures);

	metrics_counter(o, "cairn_ac_backup_written_total", "Action-cache entries written to the object store.",
	                bs.written);
	metrics_counter(o, "cairn_ac_backup_dropped_total",
	                "Action-cache entries not backed up because the backup queue was full.", bs.dropped);
	metrics_counter(o, "cairn_ac_backup_failed_total", "Action-cache backup writes that failed.", bs.failed);
	metrics_counter(o, "cairn_ac_backup_restored_total", "Action-cache entries read back from the object store.",
	                bs.restored);
}

void serve_stats_collect(void *arg, metrics_out *o)
{
	const serve_stats *s = arg;
	counters c;
	read_counters(s, &c);
	collect_cas(c.cs, o);
	if (s->os)
		collect_external(&c, o);
}

void serve_stats_log(const serve_stats *s)
{
	counters c;
	read_counters(s, &c);
	const cachefs_stats cs = c.cs;
	const cachefs_through_stats ts = c.ts;
	const objstore_stats os = c.os;
	const backup_stats bs = c.bs;
	LOG_INFO("stats", "cas blobs=%llu bytes=%llu evicted=%llu rejected_writes=%llu corrupt=%llu", U(cs.blobs),
	         U(cs.bytes), U(cs.evicted_blobs), U(cs.rejected_writes), U(cs.corrupt_blobs));
	if (!s->os)
		return;
	LOG_INFO("stats",
	         "object_store uploaded=%llu already_there=%llu fetched=%llu refused=%llu backlog=%llu failures=%llu "
	         "bytes_up=%llu bytes_down=%llu retries=%llu ac_backed_up=%llu ac_dropped=%llu ac_restored=%llu",
	         U(ts.uploaded), U(ts.skipped), U(ts.fetched), U(ts.refused), U(ts.backlog), U(ts.failures),
	         U(os.bytes_up), U(os.bytes_down), U(os.retries), U(bs.written), U(bs.dropped), U(bs.restored));
}
