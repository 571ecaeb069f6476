/* cmd: the subcommands of the cairn binary. Each parses its flags, wires modules together and runs. */
#ifndef CAIRN_CMD_H
#define CAIRN_CMD_H

int cmd_serve(int argc, char **argv);
int cmd_cas(int argc, char **argv);
int cmd_ac(int argc, char **argv);
int cmd_capabilities(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_scheduler(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_members(int argc, char **argv);

#endif
