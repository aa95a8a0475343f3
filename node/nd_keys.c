// SPDX-License-Identifier: MIT
/*
 * The node's CURVE key pair, kept in the state directory as two Z85 text
 * files: ferryd.key (secret) and ferryd.pub (public), both mode 0600.
 *
 * A file is written under a temporary name opened O_CREAT|O_EXCL with mode
 * 0600 (so it is never readable by others, not even for a moment), synced,
 * then link()ed to its final name: link() does not replace an existing
 * file, so two ferryd starting at once cannot clobber each other's key and
 * a crash never leaves a half-written key under the real name.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#define LOG_PREFIX "keys: "
#include "node/node_int.h"

/* Read one Z85 key from path; -ENOENT if absent. */
static int read_key(const char *path, bool secret, char key[ND_KEY_LEN + 1])
{
	char buf[ND_KEY_LEN + 4];
	struct stat st;
	ssize_t n;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		if (ret != -ENOENT)
			pr_perror("cannot open %s", path);
		return ret;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		pr_perror("cannot stat %s", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		pr_err("%s is not a regular file", path);
		ret = -EINVAL;
		goto out;
	}
	if (secret && (st.st_mode & 077)) {
		pr_err("%s is accessible by group or others (mode %03o); it "
		       "must be 0600",
		       path, st.st_mode & 0777);
		ret = -EPERM;
		goto out;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		ret = -errno;
		pr_perror("cannot read %s", path);
		goto out;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (!nd_key_valid(buf)) {
		pr_err("%s does not hold a 40-character Z85 key", path);
		ret = -EINVAL;
		goto out;
	}
	memcpy(key, buf, ND_KEY_LEN + 1);
out:
	close(fd);
	return ret;
}

/* Write key + "\n" to path as described at the top; -EEXIST if present. */
static int write_key(const char *path, const char *key)
{
	char tmp[PATH_MAX], line[ND_KEY_LEN + 2];
	size_t len;
	int fd, ret = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >=
	    (int)sizeof(tmp))
		return -ENAMETOOLONG;
	unlink(tmp); /* a leftover of a crashed run with our pid */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		ret = -errno;
		pr_perror("cannot create %s", tmp);
		return ret;
	}
	len = snprintf(line, sizeof(line), "%s\n", key);
	if (write(fd, line, len) != (ssize_t)len || fsync(fd)) {
		ret = errno ? -errno : -EIO;
		pr_perror("cannot write %s", tmp);
		close(fd);
		goto err_unlink;
	}
	close(fd);
	if (link(tmp, path)) {
		ret = -errno;
		if (ret != -EEXIST)
			pr_perror("cannot create %s", path);
	}
err_unlink:
	unlink(tmp);
	return ret;
}

int nd_dir_prepare(const char *what, const char *dir, mode_t allowed)
{
	struct stat st;
	int made = 0;

	if (!mkdir(dir, allowed)) {
		/* mkdir's mode went through the umask; set it exactly */
		if (chmod(dir, allowed)) {
			pr_perror("cannot set up %s %s", what, dir);
			return -errno;
		}
		made = 1;
	} else if (errno != EEXIST) {
		pr_perror("cannot create %s %s", what, dir);
		return -errno;
	}
	if (lstat(dir, &st)) {
		pr_perror("cannot stat %s %s", what, dir);
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		pr_err("%s %s is not a directory%s", what, dir,
		       S_ISLNK(st.st_mode) ? " (a symlink)" : "");
		return -ENOTDIR;
	}
	if (st.st_uid != geteuid()) {
		pr_err("%s %s belongs to uid %u, not to us (uid %u); refusing",
		       what, dir, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_mode & 07777 & ~allowed) {
		pr_err("%s %s has mode %04o, looser than %04o; refusing (chmod "
		       "%o %s)",
		       what, dir, st.st_mode & 07777, allowed, allowed, dir);
		return -EPERM;
	}
	return made;
}

int nd_keys_load_or_create(const char *dir, struct nd_keys *out, bool *created)
{
	char sec_path[PATH_MAX], pub_path[PATH_MAX], pub[ND_KEY_LEN + 1];
	int ret;

	*created = false;
	ret = nd_dir_prepare("state directory", dir, 0700);
	if (ret < 0)
		return ret;
	if (snprintf(sec_path, sizeof(sec_path), "%s/" ND_SECRET_FILE, dir) >=
		    (int)sizeof(sec_path) ||
	    snprintf(pub_path, sizeof(pub_path), "%s/" ND_PUBLIC_FILE, dir) >=
		    (int)sizeof(pub_path)) {
		pr_err("state directory path too long: %s", dir);
		return -ENAMETOOLONG;
	}

	ret = read_key(sec_path, true, out->secret_key);
	if (ret == -ENOENT) {
		if (zmq_curve_keypair(out->public_key, out->secret_key)) {
			pr_perror("zmq_curve_keypair");
			return -errno;
		}
		ret = write_key(sec_path, out->secret_key);
		if (ret == -EEXIST) /* another ferryd won the race: use its */
			ret = read_key(sec_path, true, out->secret_key);
		else if (!ret)
			*created = true;
	}
	if (ret)
		return ret;

	/* The public key always follows from the secret one. */
	if (zmq_curve_public(out->public_key, out->secret_key)) {
		pr_perror("zmq_curve_public");
		return -errno;
	}
	ret = read_key(pub_path, false, pub);
	if (ret == -ENOENT)
		ret = write_key(pub_path, out->public_key);
	else if (!ret && strcmp(pub, out->public_key)) {
		pr_err("%s does not match the secret key in %s", pub_path,
		       sec_path);
		ret = -EINVAL;
	}
	return ret == -EEXIST ? 0 : ret;
}
