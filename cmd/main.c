/* cairn: one binary, several subcommands. */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "rpc/rpc.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
} commands[] = {
	{"serve", cmd_serve, "run the embedded single-node server (scheduler and worker in one process)"},
	{"scheduler", cmd_scheduler, "join a cluster as a scheduler: clients' CAS over the workers (no execution yet)"},
	{"worker", cmd_worker, "join a cluster as a worker: the CAS on its private port (no execution yet)"},
	{"cas", cmd_cas, "put, get and look up blobs in a server's CAS"},
	{"ac", cmd_ac, "read and write a server's action cache"},
	{"capabilities", cmd_capabilities, "print what a server supports"},
	{"exec", cmd_exec, "run a command remotely and print its output"},
	{"members", cmd_members, "print a scheduler's member views and each worker's pools and stats"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: cairn COMMAND [flags]\n\n"
	             "cairn is a remote cache and remote execution service for Bazel and other REAPI clients.\n\n"
	             "commands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].help);
	fprintf(out, "\n'cairn COMMAND --help' lists a command's flags.\n");
}

int main(int argc, char **argv)
{
	rpc_route_grpc_logs();
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 2, argv + 2);
	fprintf(stderr, "cairn: unknown command '%s' (see cairn --help)\n", argv[1]);
	return 2;
}
