// SPDX-License-Identifier: MIT
/*
 * ferry-vm: boot a guest program (or restore a snapshot), run it, print
 * its progress, and on request stop it into a snapshot; with --adapter,
 * serve ferryd (kva_server.c), and with --incoming, wait for RAM and
 * state from it.
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

static volatile sig_atomic_t stop_req;

static void on_stop(int sig)
{
	(void)sig;
	stop_req = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ferry-vm [options]\n"
		"Run a small guest whose RAM is a memfd, as ferry migrates it: "
		"in "
		"KVM, or\n"
		"natively as a thread of ferry-vm (--accel user).\n"
		"\n"
		"  --mem SIZE          guest RAM, 16M..512G, a multiple of 2M "
		"(default 1G);\n"
		"                      untouched RAM costs nothing\n"
		"  --vcpus N           vCPUs, 1..%d (default 1)\n"
		"  --accel NAME        kvm (a KVM VM), user (native threads of "
		"ferry-vm,\n"
		"                      no /dev/kvm needed) or auto: kvm where "
		"/dev/kvm\n"
		"                      opens (default auto)\n"
		"  --guest NAME        guest program: idle (halts), dirty "
		"(rewrites its\n"
		"                      working set), verify (writes and checks "
		"patterns),\n"
		"                      touch (reads every data page once, "
		"scattered; again\n"
		"                      after a migration), and, for tests, "
		"state and fault\n"
		"                      (default dirty)\n"
		"  --workingset SIZE   bytes the guest keeps rewriting, split "
		"between the\n"
		"                      vCPUs (default 256M)\n"
		"  --stride N          page writes between pauses (default "
		"1000)\n"
		"  --sleep N           empty-loop iterations per pause "
		"(default 500000);\n"
		"                      (under kvm on emulating hosts guest "
		"code "
		"runs at\n"
		"                      roughly 1e6 instructions/s)\n"
		"  --rate N            dirty, verify: N page writes per second "
		"in all, in\n"
		"                      bursts of --stride, by the TSC (default "
		"0: --sleep)\n"
		"  --heartbeat N       pauses between heartbeats to the host "
		"(default 1)\n"
		"  --passes N          end after N passes over the working set "
		"(default 0:\n"
		"                      never)\n"
		"  --seed N            seed for --prefill random and the "
		"guests (default 1)\n"
		"  --prefill MODE      fill guest RAM above 8 MiB from the "
		"host before boot:\n"
		"                      random, or pattern (each 8-byte word "
		"holds its address)\n"
		"  --duration SECONDS  stop after this long (default: when the "
		"guest ends,\n"
		"                      or on SIGINT/SIGTERM)\n"
		"  --report SECONDS    print progress this often (default 1; "
		"0: never)\n"
		"  --snapshot FILE     on stopping, pause the VM and write "
		"state and RAM\n"
		"                      to FILE (holes stay holes)\n"
		"  --restore FILE      continue the VM saved in FILE instead "
		"of booting;\n"
		"                      guest options are taken from the "
		"snapshot\n"
		"  --incoming          an incoming VM (needs --adapter): "
		"empty RAM under\n"
		"                      userfaultfd, filled by ferryd, which "
		"also sends the\n"
		"                      vCPU state (SET_STATE) and starts it "
		"(RESUME);\n"
		"                      --mem and --vcpus must match the "
		"source\n"
		"  --ram-fd FD         with --incoming: guest RAM is this "
		"open memfd of\n"
		"                      --mem bytes (a copy ferryd kept of this "
		"VM), not a\n"
		"                      new one\n"
		"  --adapter SOCKET    listen on this unix socket for ferryd "
		"(adapter\n"
		"                      protocol); the VM then runs until EXIT, "
		"SIGINT,\n"
		"                      SIGTERM or --duration, even after its "
		"guest ended\n"
		"  --log-level LEVEL   err, warn, info or debug (default "
		"info)\n"
		"  --help              this text\n"
		"Exit status: 0 when the guest ended or was stopped cleanly, 1 "
		"when it\n"
		"failed (verify mismatch, guest exception, KVM error), 2 on "
		"bad usage.\n",
		KVA_MAX_VCPUS);
}

enum {
	OPT_MEM = 256,
	OPT_VCPUS,
	OPT_GUEST,
	OPT_WS,
	OPT_STRIDE,
	OPT_SLEEP,
	OPT_RATE,
	OPT_HEARTBEAT,
	OPT_PASSES,
	OPT_SEED,
	OPT_PREFILL,
	OPT_DURATION,
	OPT_REPORT,
	OPT_SNAPSHOT,
	OPT_RESTORE,
	OPT_INCOMING,
	OPT_RAM_FD,
	OPT_ADAPTER,
	OPT_LOG,
	OPT_ACCEL,
	OPT_HELP,
};

static const struct option opts[] = {
	{ "mem", required_argument, NULL, OPT_MEM },
	{ "vcpus", required_argument, NULL, OPT_VCPUS },
	{ "guest", required_argument, NULL, OPT_GUEST },
	{ "workingset", required_argument, NULL, OPT_WS },
	{ "stride", required_argument, NULL, OPT_STRIDE },
	{ "sleep", required_argument, NULL, OPT_SLEEP },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "heartbeat", required_argument, NULL, OPT_HEARTBEAT },
	{ "passes", required_argument, NULL, OPT_PASSES },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "prefill", required_argument, NULL, OPT_PREFILL },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "report", required_argument, NULL, OPT_REPORT },
	{ "snapshot", required_argument, NULL, OPT_SNAPSHOT },
	{ "restore", required_argument, NULL, OPT_RESTORE },
	{ "incoming", no_argument, NULL, OPT_INCOMING },
	{ "ram-fd", required_argument, NULL, OPT_RAM_FD },
	{ "adapter", required_argument, NULL, OPT_ADAPTER },
	{ "log-level", required_argument, NULL, OPT_LOG },
	{ "accel", required_argument, NULL, OPT_ACCEL },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static int parse_num(const char *opt, const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-') {
		pr_err("%s: '%s' is not a number", opt, s);
		return -EINVAL;
	}
	return 0;
}

static int parse_size(const char *opt, const char *s, uint64_t *out)
{
	if (fy_parse_size(s, out)) {
		pr_err("%s: '%s' is not a size (e.g. 4096, 256M, 1G)", opt, s);
		return -EINVAL;
	}
	return 0;
}

struct run_opts {
	double duration;
	double report;
	const char *snapshot;
	const char *restore;
	const char *adapter;
	bool incoming;
	int ram_fd; /* --ram-fd, or -1 */
};

/* The guest's options; -ENOENT: c is not one of them. */
static int parse_guest(int c, const char *arg, struct kva_config *cfg)
{
	uint64_t v;
	int ret = 0;

	switch (c) {
	case OPT_MEM:
		return parse_size("--mem", arg, &cfg->mem_size);
	case OPT_VCPUS:
		ret = parse_num("--vcpus", arg, &v);
		cfg->nr_vcpus = v > KVA_MAX_VCPUS ? KVA_MAX_VCPUS + 1
						  : (unsigned int)v;
		return ret;
	case OPT_GUEST:
		cfg->guest = arg;
		return 0;
	case OPT_WS:
		return parse_size("--workingset", arg, &cfg->workingset);
	case OPT_STRIDE:
		return parse_num("--stride", arg, &cfg->stride);
	case OPT_SLEEP:
		return parse_num("--sleep", arg, &cfg->sleep);
	case OPT_RATE:
		return parse_num("--rate", arg, &cfg->rate);
	case OPT_HEARTBEAT:
		return parse_num("--heartbeat", arg, &cfg->heartbeat);
	case OPT_PASSES:
		return parse_num("--passes", arg, &cfg->passes);
	case OPT_SEED:
		return parse_num("--seed", arg, &cfg->seed);
	case OPT_PREFILL:
		if (!strcmp(arg, "random"))
			cfg->prefill = KVA_PREFILL_RANDOM;
		else if (!strcmp(arg, "pattern"))
			cfg->prefill = KVA_PREFILL_PATTERN;
		else {
			pr_err("--prefill: random or pattern, not '%s'", arg);
			return -EINVAL;
		}
		return 0;
	}
	return -ENOENT;
}

static int parse_args(int argc, char **argv, struct kva_config *cfg,
		      struct run_opts *ro)
{
	enum fy_log_level level;
	int c, ret = 0;

	while (!ret && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		ret = parse_guest(c, optarg, cfg);
		if (ret != -ENOENT)
			continue;
		ret = 0;
		switch (c) {
		case OPT_DURATION:
		case OPT_REPORT: {
			char *end;
			double d = strtod(optarg, &end);

			if (end == optarg || *end || d < 0) {
				pr_err("'%s' is not a number of seconds",
				       optarg);
				ret = -EINVAL;
			}
			*(c == OPT_DURATION ? &ro->duration : &ro->report) = d;
			break;
		}
		case OPT_SNAPSHOT:
			ro->snapshot = optarg;
			break;
		case OPT_RESTORE:
			ro->restore = optarg;
			break;
		case OPT_INCOMING:
			ro->incoming = true;
			break;
		case OPT_RAM_FD: {
			uint64_t fd;

			ret = parse_num("--ram-fd", optarg, &fd);
			if (!ret && (fd < 3 || fd > INT_MAX)) {
				pr_err("--ram-fd: %s is not a file descriptor "
				       "we were given",
				       optarg);
				ret = -EINVAL;
			}
			ro->ram_fd = (int)fd;
			break;
		}
		case OPT_ADAPTER:
			ro->adapter = optarg;
			break;
		case OPT_ACCEL:
			ret = kva_accel_parse(optarg, &cfg->accel);
			if (ret)
				pr_err("--accel: auto, kvm or user");
			break;
		case OPT_LOG:
			ret = fy_log_parse_level(optarg, &level);
			if (ret)
				pr_err("--log-level: err, warn, info or debug");
			else
				fy_log_set_level(level);
			break;
		case OPT_HELP:
			usage(stdout);
			exit(0);
		default:
			ret = -EINVAL;
		}
	}
	if (!ret && optind < argc) {
		pr_err("unexpected argument '%s'", argv[optind]);
		ret = -EINVAL;
	}
	if (!ret && ro->incoming && (!ro->adapter || ro->restore)) {
		pr_err("--incoming needs --adapter (ferryd feeds the VM) and "
		       "excludes --restore");
		ret = -EINVAL;
	}
	if (!ret && ro->ram_fd >= 0 && !ro->incoming) {
		pr_err("--ram-fd needs --incoming");
		ret = -EINVAL;
	}
	return ret;
}

static int run(struct kva_vm *vm, struct kva_server *srv,
	       const struct run_opts *ro)
{
	uint64_t t0 = fy_now_ns(), last = t0, last_writes, now;
	struct kva_progress p;
	double el;

	/* A restored guest's counters start where the snapshot left them. */
	kva_vm_progress(vm, &p);
	last_writes = p.writes;

	for (;;) {
		usleep(20000);
		now = fy_now_ns();
		el = (now - t0) / 1e9;
		kva_vm_progress(vm, &p);
		if (ro->report > 0 && (now - last) / 1e9 >= ro->report) {
			printf("t=%.1fs writes=%llu (%.0f/s) pass=%llu "
			       "checks=%llu heartbeats=%llu\n",
			       el, (unsigned long long)p.writes,
			       (p.writes - last_writes) / ((now - last) / 1e9),
			       (unsigned long long)p.pass,
			       (unsigned long long)p.checks,
			       (unsigned long long)p.heartbeats);
			fflush(stdout);
			last = now;
			last_writes = p.writes;
		}
		if (srv) {
			/* ferryd decides when the VM ends. */
			if (kva_server_exit_requested(srv) || stop_req ||
			    (ro->duration > 0 && el >= ro->duration))
				return p.failed ? 1 : 0;
			continue;
		}
		if (p.failed)
			return 1;
		if (!p.running && !p.halted) {
			pr_info("guest finished: writes=%llu pass=%llu "
				"checks=%llu",
				(unsigned long long)p.writes,
				(unsigned long long)p.pass,
				(unsigned long long)p.checks);
			return 0;
		}
		if (stop_req || (ro->duration > 0 && el >= ro->duration))
			return 0;
	}
}

int main(int argc, char **argv)
{
	struct run_opts ro = { .report = 1, .ram_fd = -1 };
	struct kva_server *srv = NULL;
	struct kva_config cfg;
	struct kva_vm *vm;
	int ret, status;

	fy_log_set_level(FY_LOG_INFO);
	kva_config_init(&cfg);
	if (parse_args(argc, argv, &cfg, &ro)) {
		fprintf(stderr, "try 'ferry-vm --help'\n");
		return 2;
	}
	signal(SIGINT, on_stop);
	signal(SIGTERM, on_stop);
	if (ro.restore)
		ret = kva_vm_restore(ro.restore, cfg.accel, &vm);
	else if (ro.incoming)
		ret = kva_vm_create_incoming(&cfg, ro.ram_fd, &vm);
	else
		ret = kva_vm_create(&cfg, &vm);
	if (ret)
		return ret == -EINVAL ? 2 : 1;
	/* An incoming VM starts when ferryd says RESUME. */
	ret = ro.incoming ? 0 : kva_vm_start(vm);
	if (!ret && ro.adapter)
		ret = kva_server_open(vm, ro.adapter, &srv);
	status = ret ? 1 : run(vm, srv, &ro);
	/* No client may pause or resume the VM from here on. */
	kva_server_close(srv);
	if (ro.snapshot) {
		ret = kva_vm_snapshot(vm, ro.snapshot);
		if (ret)
			status = 1;
		else
			pr_info("snapshot written to %s", ro.snapshot);
	}
	kva_vm_destroy(vm);
	return status;
}
