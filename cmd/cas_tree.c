/* cairn cas put --tree: uploads a directory as a Merkle tree of REAPI Directory messages (entries
 * sorted by name, as the spec requires), files first, each directory after its children. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cas.h"

typedef Build__Bazel__Remote__Execution__V2__Directory directory;
typedef Build__Bazel__Remote__Execution__V2__FileNode file_node;
typedef Build__Bazel__Remote__Execution__V2__DirectoryNode dir_node;
typedef Build__Bazel__Remote__Execution__V2__SymlinkNode link_node;
typedef Build__Bazel__Remote__Execution__V2__Digest digest_pb;

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }
static int not_dots(const struct dirent *e) { return strcmp(e->d_name, ".") && strcmp(e->d_name, ".."); }

static digest_pb *new_digest(cairn_arena *a, const cairn_digest *d)
{
	digest_pb *pb = cairn_arena_alloc(a, sizeof *pb);
	char *hex = cairn_arena_alloc(a, CAIRN_HASH_HEX_LEN + 1);
	client_digest_pb(d, hex, pb);
	return pb;
}

static cairn_status upload_dir(rpc_channel *ch, const cas_opts *o, const char *path, cairn_arena *a, cairn_digest *out);

/* Adds one entry of a directory to its Directory message. */
static cairn_status add_entry(rpc_channel *ch, const cas_opts *o, const char *path, const char *name, cairn_arena *a,
                              directory *dir)
{
	struct stat sb;
	if (lstat(path, &sb) != 0)
		return cairn_errno(errno, "stat %s", path);
	cairn_digest d;
	cairn_status st = cairn_ok();
	if (S_ISREG(sb.st_mode)) {
		if ((st = cas_upload_file(ch, o, path, &d)), !cairn_is_ok(&st))
			return st;
		file_node *f = cairn_arena_alloc(a, sizeof *f);
		build__bazel__remote__execution__v2__file_node__init(f);
		f->name = cairn_arena_strndup(a, name, strlen(name));
		f->digest = new_digest(a, &d);
		f->is_executable = (sb.st_mode & S_IXUSR) != 0;
		dir->files[dir->n_files++] = f;
	} else if (S_ISDIR(sb.st_mode)) {
		if ((st = upload_dir(ch, o, path, a, &d)), !cairn_is_ok(&st))
			return st;
		dir_node *n = cairn_arena_alloc(a, sizeof *n);
		build__bazel__remote__execution__v2__directory_node__init(n);
		n->name = cairn_arena_strndup(a, name, strlen(name));
		n->digest = new_digest(a, &d);
		dir->directories[dir->n_directories++] = n;
	} else if (S_ISLNK(sb.st_mode)) {
		char target[PATH_MAX];
		ssize_t len = readlink(path, target, sizeof target - 1);
		if (len < 0)
			return cairn_errno(errno, "readlink %s", path);
		link_node *l = cairn_arena_alloc(a, sizeof *l);
		build__bazel__remote__execution__v2__symlink_node__init(l);
		l->name = cairn_arena_strndup(a, name, strlen(name));
		l->target = cairn_arena_strndup(a, target, (size_t)len);
		dir->symlinks[dir->n_symlinks++] = l;
	}
	return st; /* sockets, devices and fifos have no place in an input root: skipped */
}

static cairn_status upload_dir(rpc_channel *ch, const cas_opts *o, const char *path, cairn_arena *a, cairn_digest *out)
{
	struct dirent **ents;
	int n = scandir(path, &ents, not_dots, by_name);
	if (n < 0)
		return cairn_errno(errno, "read directory %s", path);
	directory dir = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY__INIT;
	dir.files = cairn_arena_alloc(a, (size_t)n * sizeof *dir.files + 1);
	dir.directories = cairn_arena_alloc(a, (size_t)n * sizeof *dir.directories + 1);
	dir.symlinks = cairn_arena_alloc(a, (size_t)n * sizeof *dir.symlinks + 1);
	cairn_status st = cairn_ok();
	for (int i = 0; i < n; i++) {
		if (cairn_is_ok(&st)) {
			char child[PATH_MAX];
			snprintf(child, sizeof child, "%s/%s", path, ents[i]->d_name);
			st = add_entry(ch, o, child, ents[i]->d_name, a, &dir);
		}
		free(ents[i]);
	}
	free(ents);
	if (!cairn_is_ok(&st))
		return st;
	size_t len = protobuf_c_message_get_packed_size(&dir.base);
	uint8_t *buf = cairn_arena_alloc(a, len + 1);
	protobuf_c_message_pack(&dir.base, buf);
	cairn_digest_of(buf, len, out);
	return cas_upload_bytes(ch, o, buf, len, out);
}

cairn_status cas_upload_tree(rpc_channel *ch, const cas_opts *o, const char *dir, cairn_digest *root)
{
	cairn_arena *a = cairn_arena_new(1 << 16);
	cas_opts files = *o;
	files.as_digest = ""; /* a claimed digest is for one file, not for a tree's */
	cairn_status st = upload_dir(ch, &files, dir, a, root);
	cairn_arena_free(a);
	return st;
}
