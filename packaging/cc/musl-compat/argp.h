/* Declarations of glibc's argp, which musl lacks, for the two files of
 * elfutils' lib/ that include it (color.c, printversion.c). libbpf-sys's
 * vendored build compiles that directory before libelf, but the exporter
 * links libelf.a alone: nothing declared here is ever called or defined. */
#ifndef HGE_MUSL_COMPAT_ARGP_H
#define HGE_MUSL_COMPAT_ARGP_H

#include <errno.h>
#include <stdio.h>

typedef int error_t;

struct argp_option {
	const char *name;
	int key;
	const char *arg;
	int flags;
	const char *doc;
	int group;
};

struct argp_state;

struct argp {
	const struct argp_option *options;
	error_t (*parser)(int key, char *arg, struct argp_state *state);
	const char *args_doc;
	const char *doc;
	const void *children;
	char *(*help_filter)(int key, const char *text, void *input);
	const char *argp_domain;
};

struct argp_state {
	const struct argp *root_argp;
	int argc;
	char **argv;
	int next;
	unsigned flags;
	unsigned arg_num;
	int quoted;
	void *input;
	void **child_inputs;
	void *hook;
	char *name;
	FILE *err_stream;
	FILE *out_stream;
	void *pstate;
};

#define OPTION_ARG_OPTIONAL 0x1
#define ARGP_ERR_UNKNOWN E2BIG
#define ARGP_KEY_ARG 0
#define ARGP_KEY_INIT 0x1000003
#define ARGP_HELP_SEE 0x04

void argp_help(const struct argp *argp, FILE *stream, unsigned flags, char *name);

#endif
