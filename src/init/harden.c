/* What an execution's process gives up before it runs user code: every
 * capability (bounding, ambient, inheritable, permitted, effective), the
 * ability to gain privileges (no_new_privs), and a seccomp filter that
 * refuses what Docker's default profile refuses, with EPERM.
 *
 * The filter is built once when init starts; an execution's child (init is
 * single-threaded, so its children may allocate) loads it as its last step
 * before execve.
 */
#include "init/harden.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/util.h"

static scmp_filter_ctx filter;
static int cap_last = 40;

/* Refused outright: kernel modules and images, keys, BPF and perf, clock
 * and time setting, swap, reboot, accounting, quotas, mounts and new roots,
 * namespace entry and creation, handles to arbitrary inodes, userfaultfd,
 * io_uring (its own attack surface, off in Docker's default too), NUMA
 * policy, raw I/O ports and obsolete calls. */
static const char *const denied[] = {
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "settimeofday",
    "stime",
    "adjtimex",
    "create_module",
    "delete_module",
    "finit_module",
    "init_module",
    "get_kernel_syms",
    "query_module",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "request_key",
    "lookup_dcookie",
    "mount",
    "umount",
    "umount2",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "pivot_root",
    "chroot",
    "nfsservctl",
    "open_by_handle_at",
    "perf_event_open",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "setns",
    "unshare",
    "swapon",
    "swapoff",
    "syslog",
    "sysfs",
    "_sysctl",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
    "iopl",
    "ioperm",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "mbind",
    "set_mempolicy",
    "migrate_pages",
    "move_pages",
    "fanotify_init",
    "name_to_handle_at",
    "vhangup",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "personality",
    "lsm_set_self_attr",
    "landlock_create_ruleset",
};

/* Namespace flags that a clone() may not carry. */
static const unsigned long clone_ns[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,   CLONE_NEWUSER,
					 CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP};

int harden_init(void)
{
	char buf[16];
	if (read_file_small("/proc/sys/kernel/cap_last_cap", buf, sizeof(buf), NULL) > 0)
		cap_last = atoi(buf);
	filter = seccomp_init(SCMP_ACT_ALLOW);
	if (filter == NULL)
		return -1;
	/* A binary tree instead of a list: every allowed syscall would
	 * otherwise walk past every rule. */
	seccomp_attr_set(filter, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	/* Other ABIs (i386, x32) are refused whole: the default bad-arch
	 * action kills, so no syscall slips past under another number. */
	for (size_t i = 0; i < ARRAY_SIZE(denied); i++) {
		int nr = seccomp_syscall_resolve_name(denied[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		if (seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM), nr, 0) < 0)
			return -1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(clone_ns); i++)
		if (seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns[i], clone_ns[i])) < 0)
			return -1;
	/* clone3 passes its flags in memory, out of a filter's reach: ENOSYS
	 * makes libc fall back to clone(), which is checked above. */
	if (seccomp_rule_add(filter, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0)
		return -1;
	/* Typing into another process's terminal. */
	if (seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
			     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI)) < 0 ||
	    seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
			     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX)) < 0)
		return -1;
	return 0;
}

int harden_drop_caps_bounding(void)
{
	for (int cap = 0; cap <= cap_last; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			return -1;
	return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

int harden_become_user(uid_t uid, gid_t gid, const char **stage)
{
	*stage = "capability bounding set";
	if (harden_drop_caps_bounding() < 0)
		return -1;
	*stage = "setuid";
	if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		return -1;
	*stage = "capabilities";
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) < 0)
		return -1;
	*stage = "no_new_privs";
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return 0;
}

int harden_seccomp_load(void)
{
	int r = seccomp_load(filter);
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return 0;
}
