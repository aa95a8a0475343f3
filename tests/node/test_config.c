// SPDX-License-Identifier: MIT
/*
 * node/ unit tests: configuration parsing (defaults, every error naming
 * file, line and problem), key files (created 0600, reloaded, refused when
 * loose), the control directory checks, and the msgpack -> JSON printer.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "node/node_int.h"

#define KEY_A "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
#define KEY_B "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-test-node.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Write text to tmpdir/name and return the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
	static char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void test_defaults(void **state)
{
	struct nd_config *cfg;
	char err[512];
	const char *path = write_file("min.conf", "[node]\nname = a\n");

	(void)state;
	assert_int_equal(nd_config_load(path, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg->name, "a");
	assert_string_equal(cfg->listen, ND_DEFAULT_LISTEN);
	assert_string_equal(cfg->state_dir, ND_DEFAULT_STATE_DIR);
	assert_string_equal(cfg->control, ND_DEFAULT_CONTROL);
	assert_string_equal(cfg->provider, "ofi:tcp");
	assert_string_equal(cfg->fabric_address, ""); /* the provider's */
	assert_string_equal(cfg->fabric_port, "");
	assert_string_equal(cfg->control_group, "");
	assert_int_equal(cfg->log_level, FY_LOG_INFO);
	assert_int_equal(cfg->ping_interval_ms, 500);
	assert_int_equal(cfg->peer_timeout_ms, 1500);
	assert_string_equal(cfg->vm_dir, ""); /* <state_dir>/vms */
	assert_string_equal(cfg->ferry_vm, "");
	assert_int_equal(cfg->mig_timeout_ms, 10000);
	assert_int_equal(cfg->max_incoming, 4);
	assert_int_equal(cfg->max_outgoing, 4);
	assert_int_equal(cfg->postcopy_max_bandwidth, 0);
	assert_int_equal(cfg->npeers, 0);
	free(cfg);

	/* an empty file is all defaults too */
	path = write_file("empty.conf", "; nothing\n");
	assert_int_equal(nd_config_load(path, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg->listen, ND_DEFAULT_LISTEN);
	assert_true(cfg->name[0] != '\0');
	free(cfg);
}

static void test_full(void **state)
{
	struct nd_config *cfg;
	char err[512];
	const char *path = write_file(
		"full.conf",
		"# a comment\n"
		"[node]\n"
		"name = node-1\n"
		"listen = tcp://*:7501   ; inline comment\n"
		"state_dir = /tmp/x\n"
		"  control = /tmp/x/run/ferryd.sock\n" /* indented is fine */
		"control_group = root\n"
		"log_level = debug\n"
		"ping_interval_ms = 200\n"
		"peer_timeout_ms = 900\n"
		"vm_dir = /tmp/x/vms\n"
		"ferry_vm = /opt/ferry/bin/ferry-vm\n"
		"migration_timeout_ms = 5000\n"
		"max_incoming = 1\n"
		"max_outgoing = 16\n"
		"postcopy_max_bandwidth = 100M\n"
		"\n"
		"[fabric]\n"
		"provider = ofi:shm\n"
		"address = 10.0.0.1\n"
		"port = 9000\n"
		"[peer b]\n"
		"address = tcp://127.0.0.1:7402\n"
		"public_key = " KEY_A "\n"
		"[ peer   c ]\n"
		"public_key = " KEY_B "\n"
		"address = tcp://host.example:7403\n"
		"accept_user_vms = yes\n");

	(void)state;
	assert_int_equal(nd_config_load(path, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg->path, path);
	assert_string_equal(cfg->name, "node-1");
	assert_string_equal(cfg->listen, "tcp://*:7501");
	assert_string_equal(cfg->state_dir, "/tmp/x");
	assert_string_equal(cfg->control, "/tmp/x/run/ferryd.sock");
	assert_string_equal(cfg->control_group, "root");
	assert_int_equal(cfg->control_gid, 0);
	assert_int_equal(cfg->log_level, FY_LOG_DEBUG);
	assert_int_equal(cfg->ping_interval_ms, 200);
	assert_int_equal(cfg->peer_timeout_ms, 900);
	assert_string_equal(cfg->provider, "ofi:shm");
	assert_string_equal(cfg->fabric_address, "10.0.0.1");
	assert_string_equal(cfg->fabric_port, "9000");
	assert_string_equal(cfg->vm_dir, "/tmp/x/vms");
	assert_string_equal(cfg->ferry_vm, "/opt/ferry/bin/ferry-vm");
	assert_int_equal(cfg->max_incoming, 1);
	assert_int_equal(cfg->max_outgoing, 16);
	assert_int_equal(cfg->postcopy_max_bandwidth, 100ULL << 20);
	assert_int_equal(cfg->mig_timeout_ms, 5000);
	assert_int_equal(cfg->npeers, 2);
	assert_string_equal(cfg->peers[0].name, "b");
	assert_string_equal(cfg->peers[0].address, "tcp://127.0.0.1:7402");
	assert_string_equal(cfg->peers[0].public_key, KEY_A);
	assert_int_equal(cfg->peers[0].line, 22);
	assert_false(cfg->peers[0].accept_user_vms);
	assert_string_equal(cfg->peers[1].name, "c");
	assert_string_equal(cfg->peers[1].address, "tcp://host.example:7403");
	assert_string_equal(cfg->peers[1].public_key, KEY_B);
	assert_int_equal(cfg->peers[1].line, 25);
	assert_true(cfg->peers[1].accept_user_vms);
	free(cfg);
}

struct bad_case {
	const char *text;
	const char *expect; /* after "PATH:" */
};

static const struct bad_case bad_cases[] = {
	{ "[nodes]\nname = a\n", "1: unknown section [nodes]" },
	{ "[node]\nname = a\nfoo = 1\n", "3: unknown key 'foo' in [node]" },
	{ "name = a\n", "1: key 'name' outside of any section" },
	{ "[node]\nlisten = udp://1.2.3.4:5\n", "2: listen: bad value "
						"'udp://1.2.3.4:5'" },
	{ "[node]\nlisten = tcp://127.0.0.1:99999\n", "2: listen: bad value "
						      "'tcp://"
						      "127.0.0.1:99999'" },
	{ "[node]\nlisten = tcp://127.0.0.1\n", "2: listen: bad value "
						"'tcp://127.0.0.1'" },
	{ "[node]\nname = a b\n", "2: name: bad value 'a b'" },
	{ "[node]\nname =\n", "2: name: empty value" },
	{ "[node]\nstate_dir = relative/dir\n", "2: state_dir: bad value "
						"'relative/dir'" },
	{ "[node]\nlog_level = loud\n", "2: log_level: bad value 'loud'" },
	{ "[node]\nvm_dir = vms\n", "2: vm_dir: bad value 'vms'" },
	{ "[node]\nmigration_timeout_ms = 10\n", "2: migration_timeout_ms: "
						 "bad value '10'" },
	{ "[node]\nmax_incoming = 0\n", "2: max_incoming: bad value '0'" },
	{ "[node]\nmax_outgoing = 17\n", "2: max_outgoing: bad value '17'" },
	{ "[node]\npostcopy_max_bandwidth = fast\n", "2: "
						     "postcopy_max_bandwidth: "
						     "bad value 'fast'" },
	{ "[node]\nholder_retention = 1G\n[fabric]\nprovider = ofi:shm\n",
	  "1: holder_retention needs a fabric that checks keys; ofi:shm does "
	  "not" },
	{ "[node]\nping_interval_ms = 10\n", "2: ping_interval_ms: bad value "
					     "'10'" },
	{ "[node]\nping_interval_ms = 500\npeer_timeout_ms = 400\n",
	  "1: peer_timeout_ms (400) must be larger than ping_interval_ms "
	  "(500)" },
	{ "[node]\ncontrol_group = no-such-group-ferry\n", "2: control_group: "
							   "unknown group "
							   "'no-such-group-"
							   "ferry'" },
	{ "[node]\nname = a\nname = b\n", "3: duplicate key 'name' in [node]" },
	{ "[node]\n[fabric]\n[node]\n", "3: duplicate section [node] (first at "
					"line 1)" },
	{ "[fabric]\nport = http\n", "2: port: bad value 'http'" },
	{ "[fabric]\ndevice = ../rxe0\n", "2: device: bad value '../rxe0'" },
	{ "[fabric]\ndevice_port = 0\n", "2: device_port: bad value '0'" },
	{ "[fabric]\ngid_index = -1\n", "2: gid_index: bad value '-1'" },
	{ "[fabric]\nprovider = ofi tcp\n", "2: provider: bad value 'ofi "
					    "tcp'" },
	{ "[node]\nthis line has no equals sign\n", "2: syntax error (expected "
						    "[section], key = value or "
						    "a comment)" },
	{ "[peer b]\naddress = tcp://127.0.0.1:1\npublic_key = " KEY_A "\n"
	  "[peer b]\naddress = tcp://127.0.0.1:2\npublic_key = " KEY_B "\n",
	  "4: duplicate peer 'b' (first at line 1)" },
	{ "[peer b]\npublic_key = " KEY_A "\naddress = tcp://127.0.0.1:1\n"
	  "[peer b]\n",
	  "4: duplicate peer 'b' (first at line 1)" },
	{ "[node]\n\n[peer b]\naddress = tcp://127.0.0.1:1\n\n[fabric]\n",
	  "3: peer 'b' has no public_key" },
	{ "[peer b]\npublic_key = " KEY_A "\n", "1: peer 'b' has no address" },
	{ "[peer b]\naccept_user_vms = maybe\n", "2: accept_user_vms: bad "
						 "value 'maybe'" },
	{ "[peer b]\naddress = tcp://127.0.0.1:1\npublic_key = short\n",
	  "3: public_key of peer 'b': not a 40-character Z85 CURVE key" },
	{ "[peer b]\naddress = tcp://127.0.0.1:1\n"
	  "public_key = Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hI\"\n",
	  "3: public_key of peer 'b': not a 40-character Z85 CURVE key" },
	{ "[peer b]\naddress = tcp://127.0.0.1:1\npublic_key = " KEY_A "\n"
	  "[peer c]\naddress = tcp://127.0.0.1:2\npublic_key = " KEY_A "\n",
	  "4: peer 'c' has the same public_key as peer 'b' (line 1)" },
	{ "[node]\nname = a\n[peer a]\naddress = tcp://127.0.0.1:1\n"
	  "public_key = " KEY_A "\n",
	  "3: peer 'a' has this node's own name" },
	{ "[peer b!]\n", "1: bad peer name 'b!'" },
	{ "[peer b]\nport = 1\n", "2: unknown key 'port' in [peer b]" },
};

/* verbs' device, port and GID; auto (NULL, 0) where not set. */
static void test_verbs_keys(void **state)
{
	const char *path = write_file("verbs.conf", "[fabric]\n"
						    "provider = verbs\n"
						    "device = rxe0\n"
						    "device_port = 2\n"
						    "gid_index = 3\n");
	struct nd_config *cfg;
	struct fab_opts o;
	char err[512];

	(void)state;
	assert_int_equal(nd_config_load(path, &cfg, err, sizeof(err)), 0);
	nd_config_fab_opts(cfg, &o);
	assert_string_equal(o.provider, "verbs");
	assert_null(o.node); /* the GID entry's address */
	assert_string_equal(o.verbs_device, "rxe0");
	assert_int_equal(o.verbs_port, 2);
	assert_int_equal(o.verbs_gid, 4); /* index + 1 */
	free(cfg);
	path = write_file("verbs2.conf", "[fabric]\naddress = 10.0.0.1\n");
	assert_int_equal(nd_config_load(path, &cfg, err, sizeof(err)), 0);
	nd_config_fab_opts(cfg, &o);
	assert_string_equal(o.node, "10.0.0.1");
	assert_null(o.verbs_device);
	assert_int_equal(o.verbs_port, 0);
	assert_int_equal(o.verbs_gid, 0);
	free(cfg);
}

static void test_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct nd_config *cfg = NULL;
		char err[512], want[600];
		const char *path = write_file("bad.conf", bad_cases[i].text);

		snprintf(want, sizeof(want), "%s:%s", path,
			 bad_cases[i].expect);
		assert_int_equal(nd_config_load(path, &cfg, err, sizeof(err)),
				 -EINVAL);
		assert_null(cfg);
		if (strncmp(err, want, strlen(want))) {
			print_error("case %zu: got '%s', want '%s'\n", i, err,
				    want);
			fail();
		}
	}
}

static void test_long_line(void **state)
{
	char text[600], err[512], want[600];
	struct nd_config *cfg;
	const char *path;

	(void)state;
	snprintf(text, sizeof(text), "[node]\nstate_dir = /%0400d\n", 0);
	path = write_file("long.conf", text);
	assert_int_equal(nd_config_load(path, &cfg, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:2: line too long", path);
	assert_memory_equal(err, want, strlen(want));

	/* the limit is 197 characters (inih's 200 with CR, LF and NUL) */
	snprintf(text, sizeof(text), "[node]\nstate_dir = /%0184d\r\n", 0);
	path = write_file("long.conf", text);
	assert_int_equal(nd_config_load(path, &cfg, err, sizeof(err)), 0);
	assert_int_equal(strlen(cfg->state_dir), 185);
	free(cfg);
	snprintf(text, sizeof(text), "[node]\nstate_dir = /%0185d\n", 0);
	path = write_file("long.conf", text);
	assert_int_equal(nd_config_load(path, &cfg, err, sizeof(err)), -EINVAL);
	assert_memory_equal(err, want, strlen(want));
}

static void test_unreadable(void **state)
{
	struct nd_config *cfg;
	char err[512], want[600];

	(void)state;
	snprintf(want, sizeof(want), "%s/missing.conf", tmpdir);
	assert_int_equal(nd_config_load(want, &cfg, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "missing.conf: cannot open: No such file"));

	/* a directory opens but cannot be read */
	assert_int_equal(nd_config_load(tmpdir, &cfg, err, sizeof(err)),
			 -EISDIR);
	snprintf(want, sizeof(want), "%s: cannot read: Is a directory", tmpdir);
	assert_string_equal(err, want);
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

static void test_keys(void **state)
{
	char dir[300], path[400], pub[400];
	struct nd_keys k1, k2;
	bool created;
	mode_t old;
	FILE *f;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/state", tmpdir);
	snprintf(path, sizeof(path), "%s/" ND_SECRET_FILE, dir);
	snprintf(pub, sizeof(pub), "%s/" ND_PUBLIC_FILE, dir);
	/* a permissive umask must not leak into the files' modes */
	old = umask(0);
	assert_int_equal(nd_keys_load_or_create(dir, &k1, &created), 0);
	umask(old);
	assert_true(created);
	assert_int_equal(mode_of(dir), 0700);
	assert_int_equal(mode_of(path), 0600);
	assert_int_equal(mode_of(pub), 0600);
	assert_true(nd_key_valid(k1.public_key));
	assert_true(nd_key_valid(k1.secret_key));
	assert_string_not_equal(k1.public_key, k1.secret_key);

	/* the second start loads the same pair */
	assert_int_equal(nd_keys_load_or_create(dir, &k2, &created), 0);
	assert_false(created);
	assert_string_equal(k1.public_key, k2.public_key);
	assert_string_equal(k1.secret_key, k2.secret_key);

	/* a lost public key file is recreated from the secret */
	assert_int_equal(unlink(pub), 0);
	assert_int_equal(nd_keys_load_or_create(dir, &k2, &created), 0);
	assert_string_equal(k1.public_key, k2.public_key);
	assert_int_equal(mode_of(pub), 0600);

	/* a public key that does not match is an error */
	f = fopen(pub, "w");
	assert_non_null(f);
	fprintf(f, "%s\n", KEY_A);
	fclose(f);
	assert_int_equal(nd_keys_load_or_create(dir, &k2, &created), -EINVAL);
	assert_int_equal(unlink(pub), 0);

	/* a secret key readable by others is refused */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(nd_keys_load_or_create(dir, &k2, &created), -EPERM);
	assert_int_equal(chmod(path, 0600), 0);

	/* garbage in the secret key file */
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "not a key\n");
	fclose(f);
	assert_int_equal(nd_keys_load_or_create(dir, &k2, &created), -EINVAL);
}

static void test_ctl_dir(void **state)
{
	struct nd_config cfg;
	char dir[64];

	(void)state;
	nd_config_defaults(&cfg);
	assert_true(strlen(tmpdir) < 40);
	snprintf(dir, sizeof(dir), "%s/run", tmpdir);
	snprintf(cfg.control, sizeof(cfg.control), "%s/ferryd.sock", dir);

	/* created 0700 whatever the umask */
	umask(0);
	assert_int_equal(nd_ctl_prepare(&cfg), 0);
	umask(022);
	assert_int_equal(mode_of(dir), 0700);
	assert_int_equal(nd_ctl_prepare(&cfg), 0);

	/* looser than 0700: refused */
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(nd_ctl_prepare(&cfg), -EPERM);
	assert_int_equal(chmod(dir, 0710), 0);
	assert_int_equal(nd_ctl_prepare(&cfg), -EPERM);

	/* with a control group, 0750 of that group is fine */
	snprintf(cfg.control_group, sizeof(cfg.control_group), "root");
	cfg.control_gid = 0;
	assert_int_equal(chown(dir, -1, 0), 0);
	assert_int_equal(chmod(dir, 0750), 0);
	assert_int_equal(nd_ctl_prepare(&cfg), 0);
	assert_int_equal(chmod(dir, 0770), 0);
	assert_int_equal(nd_ctl_prepare(&cfg), -EPERM);
	assert_int_equal(chmod(dir, 0700), 0);

	/* something that is not a socket in the socket's place */
	cfg.control_group[0] = '\0';
	write_file("run/ferryd.sock", "x");
	assert_int_equal(nd_ctl_prepare(&cfg), -EEXIST);
	assert_int_equal(unlink(cfg.control), 0);

	/* another owner */
	assert_int_equal(chown(dir, 12345, -1), 0);
	assert_int_equal(nd_ctl_prepare(&cfg), -EPERM);
	assert_int_equal(chown(dir, 0, -1), 0);
}

static void test_fab_addr(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	uint8_t raw[4] = { 0xde, 0xad, 0x00, 0x01 };
	char buf[128];

	(void)state;
	sin.sin_port = htons(7401);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	nd_fmt_fab_addr((uint8_t *)&sin, sizeof(sin), buf, sizeof(buf));
	assert_string_equal(buf, "127.0.0.1:7401");
	sin6.sin6_port = htons(9);
	sin6.sin6_addr = in6addr_loopback;
	nd_fmt_fab_addr((uint8_t *)&sin6, sizeof(sin6), buf, sizeof(buf));
	assert_string_equal(buf, "[::1]:9");
	nd_fmt_fab_addr(raw, sizeof(raw), buf, sizeof(buf));
	assert_string_equal(buf, "dead0001");
	/* cut to the buffer, still terminated */
	nd_fmt_fab_addr(raw, sizeof(raw), buf, 6);
	assert_string_equal(buf, "dead");
	nd_fmt_fab_addr(raw, 0, buf, sizeof(buf));
	assert_string_equal(buf, "-");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_verbs_keys),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_unreadable),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_ctl_dir),
		cmocka_unit_test(test_fab_addr),
	};

	fy_log_set_level(FY_LOG_ERR);
	return cmocka_run_group_tests_name("node", tests, setup, teardown);
}
