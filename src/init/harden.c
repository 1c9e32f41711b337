/* What an execution's process gives up before it runs user code: every
 * capability (bounding, ambient, inheritable, permitted, effective), the
 * ability to gain privileges (no_new_privs), and every system call but those
 * a session needs, through two stacked seccomp filters:
 *
 *   - the call filter, an allow-list: the calls of Docker's default profile
 *     that need no capability, less a few (below); the calls it refuses on
 *     purpose answer EPERM; every other number, a call newer than this list
 *     above all, answers ENOSYS;
 *   - the argument filter: of the calls allowed, clone with a namespace
 *     flag, two terminal ioctls, and sockets of any family but local, IP and
 *     routing netlink are refused.
 *
 * Both are built and compiled to BPF once when init starts; an execution's
 * child loads them, with nothing but system calls, as its last step before
 * execve.
 */
#include "init/harden.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/util.h"

/* Docker's default profile (moby profiles/seccomp/default.json) for a
 * process without capabilities, on x86-64, grouped. Left out of it: with
 * EPERM, what was refused here before this list existed (adjtimex,
 * clock_adjtime, name_to_handle_at, process_vm_readv, process_vm_writev,
 * personality, landlock_create_ruleset) and what is of no use without it
 * (fanotify_mark, landlock_add_rule, landlock_restrict_self); with ENOSYS:
 * modify_ldt (16-bit segments, a history of kernel bugs, nothing a session
 * runs needs them), memfd_secret (memory taken out of the kernel's direct
 * map: new kernel surface for no use here), cachestat (page-cache residency
 * of any file it can open: the image's files are shared with the host and
 * every session, and mincore was restricted for the same reason in Linux
 * 5.0), statmount and listmount (/proc/self/mountinfo tells a session its
 * mounts) and the kernel's own unimplemented epoll_ctl_old/epoll_wait_old.
 * ptrace stays, as in Docker: it reaches only the session's own user. */
static const char *const allowed[] = {
    /* file data and descriptors */
    "read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2 lseek "
    "sendfile copy_file_range splice tee vmsplice open openat openat2 creat close "
    "close_range dup dup2 dup3 fcntl flock pipe pipe2 ioctl",
    /* file metadata */
    "stat fstat lstat newfstatat statx statfs fstatfs access faccessat faccessat2 getdents "
    "getdents64 getcwd chdir fchdir readlink readlinkat",
    "mkdir mkdirat rmdir rename renameat renameat2 link linkat symlink symlinkat unlink "
    "unlinkat mknod mknodat chmod fchmod fchmodat fchmodat2 chown fchown lchown fchownat "
    "umask truncate ftruncate fallocate utime utimes utimensat futimesat",
    "setxattr lsetxattr fsetxattr setxattrat getxattr lgetxattr fgetxattr getxattrat "
    "listxattr llistxattr flistxattr listxattrat removexattr lremovexattr fremovexattr "
    "removexattrat",
    "fsync fdatasync sync syncfs sync_file_range readahead fadvise64",
    "io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents",
    /* waiting on descriptors */
    "poll ppoll select pselect6 epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait "
    "epoll_pwait2 eventfd eventfd2 signalfd signalfd4 timerfd_create timerfd_settime "
    "timerfd_gettime inotify_init inotify_init1 inotify_add_watch inotify_rm_watch",
    /* memory */
    "brk mmap munmap mprotect mremap msync madvise mincore mlock mlock2 munlock mlockall "
    "munlockall remap_file_pages memfd_create membarrier pkey_alloc pkey_free "
    "pkey_mprotect mseal map_shadow_stack",
    /* processes and threads */
    "clone fork vfork execve execveat exit exit_group wait4 waitid kill tkill tgkill "
    "pidfd_open pidfd_send_signal process_mrelease ptrace getpid getppid gettid "
    "set_tid_address getpgid setpgid getpgrp getsid setsid prctl arch_prctl "
    "get_thread_area set_thread_area seccomp rseq restart_syscall uretprobe",
    "futex futex_waitv futex_wake futex_wait futex_requeue set_robust_list get_robust_list",
    "getuid geteuid getgid getegid getresuid getresgid setuid setgid setreuid setregid "
    "setresuid setresgid setfsuid setfsgid getgroups setgroups capget capset",
    "rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigtimedwait rt_sigqueueinfo "
    "rt_tgsigqueueinfo rt_sigsuspend sigaltstack pause",
    /* time, scheduling, limits, system facts */
    "time gettimeofday clock_gettime clock_getres clock_nanosleep nanosleep alarm getitimer "
    "setitimer timer_create timer_settime timer_gettime timer_getoverrun timer_delete times",
    "sched_yield sched_setparam sched_getparam sched_setscheduler sched_getscheduler "
    "sched_get_priority_max sched_get_priority_min sched_rr_get_interval sched_setaffinity "
    "sched_getaffinity sched_setattr sched_getattr getpriority setpriority ioprio_get "
    "ioprio_set getcpu getrlimit setrlimit prlimit64 getrusage uname sysinfo getrandom",
    /* System V and POSIX IPC, of the session's own IPC namespace */
    "shmget shmat shmdt shmctl semget semop semtimedop semctl msgget msgsnd msgrcv msgctl "
    "mq_open mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr",
    /* sockets (families: the argument filter) */
    "socket socketpair bind listen accept accept4 connect shutdown getsockname getpeername "
    "getsockopt setsockopt sendto recvfrom sendmsg recvmsg sendmmsg recvmmsg",
};

/* Refused with EPERM, as Docker refuses them without a capability (and as
 * the kernel would for most of them anyway): kernel modules and images,
 * keys, BPF and perf, clock and time setting, system state, mounts and new
 * roots, namespace entry and creation, handles to arbitrary inodes,
 * userfaultfd, io_uring (its own attack surface, and its requests, socket
 * creation included, bypass seccomp), NUMA policy, raw I/O ports and
 * obsolete ABIs, other processes' memory, and notification and LSM
 * interfaces. Names x86-64 does not have (vm86, stime...) add nothing. */
static const char *const refused[] = {
    "create_module delete_module finit_module init_module get_kernel_syms query_module "
    "kexec_file_load kexec_load",
    "add_key keyctl request_key",
    "bpf perf_event_open lookup_dcookie",
    "clock_adjtime clock_settime settimeofday stime adjtimex",
    "acct reboot swapon swapoff syslog sysfs _sysctl quotactl quotactl_fd nfsservctl ustat "
    "uselib vhangup sethostname setdomainname",
    "mount umount umount2 move_mount open_tree open_tree_attr fsopen fsconfig fsmount fspick "
    "mount_setattr pivot_root chroot",
    "setns unshare",
    "open_by_handle_at name_to_handle_at",
    "userfaultfd io_uring_setup io_uring_enter io_uring_register",
    "mbind set_mempolicy set_mempolicy_home_node get_mempolicy migrate_pages move_pages",
    "iopl ioperm vm86 vm86old personality",
    "process_vm_readv process_vm_writev process_madvise pidfd_getfd kcmp",
    "fanotify_init fanotify_mark lsm_set_self_attr landlock_create_ruleset landlock_add_rule "
    "landlock_restrict_self",
};

/* Calls that the libseccomp this is built with (2.5.4 stops at 456) may not
 * know by name. Numbers from 424 on are the same on every architecture but
 * alpha. Without this table such a name would add nothing: an allowed call
 * would answer ENOSYS and, worse, a refused one too, not EPERM. */
static const struct {
	const char *name;
	int nr;
} newer[] = {
#ifdef __x86_64__
    {"uretprobe", 335},
#endif
    {"lsm_set_self_attr", 460}, {"mseal", 462},	      {"setxattrat", 463},
    {"getxattrat", 464},	{"listxattrat", 465}, {"removexattrat", 466},
    {"open_tree_attr", 467},
};

/* Namespace flags that a clone() may not carry. */
static const unsigned long clone_ns[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,   CLONE_NEWUSER,
					 CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP};

/* Native call numbers stay below this (x86-64's x32 calls, from 512 on, are
 * reachable only with the x32 bit). */
#define CALL_NR_MAX 512

/* The two filters as BPF, call filter first; loaded in that order. */
static struct sock_filter call_insns[8 + 2 * CALL_NR_MAX];
static struct sock_filter args_insns[512];
static struct sock_fprog progs[2];
static int cap_last = 40;

static int syscall_nr(const char *name)
{
	int nr = seccomp_syscall_resolve_name(name);
	for (size_t i = 0; nr == __NR_SCMP_ERROR && i < ARRAY_SIZE(newer); i++)
		if (strcmp(newer[i].name, name) == 0)
			nr = newer[i].nr;
	return nr;
}

/* Sets verdict[nr] to v for every name of the space-separated lists. */
static int verdict_set(uint32_t *verdict, uint32_t v, const char *const *lists, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (const char *p = lists[i]; *p;) {
			size_t len = strcspn(p, " ");
			char name[40];
			if (len >= sizeof(name))
				return -1;
			memcpy(name, p, len);
			name[len] = '\0';
			p += len + (p[len] == ' ');
			int nr = syscall_nr(name);
			if (nr < 0)
				continue; /* not on this architecture */
			if (nr >= CALL_NR_MAX)
				return -1;
			verdict[nr] = v;
		}
	}
	return 0;
}

/* The call filter, written as BPF here rather than by libseccomp: it is a
 * plain map from call number to verdict, and libseccomp takes some 2 ms to
 * compile 360 rules on this machine kind, at every sandbox's start, where
 * this takes microseconds. It reads no argument, so the kernel caches its
 * ALLOW for every allowed number and runs it only for the others.
 *
 * Refusing by default with ENOSYS rather than EPERM is for calls newer than
 * this list: a program asks for them, sees "not implemented" as on an older
 * kernel, and falls back (glibc goes from clone3 to clone, from faccessat2
 * to faccessat, from fchmodat2 to fchmodat...), where EPERM would be taken
 * for a real refusal and fail it; runc returns ENOSYS for calls newer than
 * its profile for that reason. clone3 is in neither list, on purpose: it
 * passes its flags in memory, out of a filter's reach, and ENOSYS makes libc
 * fall back to clone(), whose flags the argument filter checks. */
static int build_calls(struct sock_fprog *prog)
{
	uint32_t verdict[CALL_NR_MAX];
	for (int nr = 0; nr < CALL_NR_MAX; nr++)
		verdict[nr] = SECCOMP_RET_ERRNO | ENOSYS;
	if (verdict_set(verdict, SECCOMP_RET_ALLOW, allowed, ARRAY_SIZE(allowed)) < 0 ||
	    verdict_set(verdict, SECCOMP_RET_ERRNO | EPERM, refused, ARRAY_SIZE(refused)) < 0)
		return -1;
	struct sock_filter *p = call_insns;
	size_t n = 0;
	/* Another ABI kills: no call slips past under another number. */
	p[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
					      offsetof(struct seccomp_data, arch));
	p[n++] =
	    (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, seccomp_arch_native(), 1, 0);
	p[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	p[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
					      offsetof(struct seccomp_data, nr));
#ifdef __x86_64__
	/* x32 calls come with x86-64's arch and bit 30 set in the number. */
	p[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1);
	p[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
#endif
	/* Runs of numbers with one verdict, in ascending order: the first run
	 * whose last number is not below the call's decides. */
	for (int nr = 0; nr < CALL_NR_MAX; nr++) {
		if (nr + 1 < CALL_NR_MAX && verdict[nr + 1] == verdict[nr])
			continue;
		p[n++] =
		    (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, (uint32_t)nr, 1, 0);
		p[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, verdict[nr]);
	}
	p[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
	prog->len = (unsigned short)n;
	prog->filter = p;
	return 0;
}

/* The argument filter: everything not refused here passes (to the call
 * filter's verdict). libseccomp cannot say "this call, but for these
 * argument values" in an allow-list, whose fallback is the default action:
 * a second filter that allows by default can, and the kernel applies the
 * stricter of the two verdicts. */
static int build_args(scmp_filter_ctx f)
{
	for (size_t i = 0; i < ARRAY_SIZE(clone_ns); i++)
		if (seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns[i], clone_ns[i])) < 0)
			return -1;
	/* Typing into another process's terminal. The command is an unsigned
	 * int: the upper half of the register does not count. */
	if (seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
			     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI)) < 0 ||
	    seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
			     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX)) < 0)
		return -1;
	/* Socket families: local, IPv4, IPv6, and netlink for routing only
	 * (getifaddrs(), so Node's and Bun's os.networkInterfaces(), and
	 * glibc's getaddrinfo() read the session's own interfaces and
	 * addresses with it; changing them takes CAP_NET_ADMIN, which no
	 * execution has). Everything else is refused as if the kernel lacked
	 * it: AF_VSOCK above all, whose port space is the host's and every
	 * session's, AF_PACKET, AF_ALG, AF_KEY, and the netlink protocols of
	 * audit, uevents, sock_diag (ss falls back to /proc/net), netfilter,
	 * crypto and the rest. The whole 64-bit argument is compared: a value
	 * with bits above the int the kernel reads is refused, never taken
	 * for an allowed one. */
	static const int calls[] = {SCMP_SYS(socket), SCMP_SYS(socketpair)};
	for (size_t i = 0; i < ARRAY_SIZE(calls); i++) {
		for (unsigned fam = AF_UNSPEC; fam < AF_NETLINK; fam++) {
			if (fam == AF_UNIX || fam == AF_INET || fam == AF_INET6)
				continue;
			if (seccomp_rule_add(f, SCMP_ACT_ERRNO(EAFNOSUPPORT), calls[i], 1,
					     SCMP_A0(SCMP_CMP_EQ, fam)) < 0)
				return -1;
		}
		if (seccomp_rule_add(f, SCMP_ACT_ERRNO(EAFNOSUPPORT), calls[i], 1,
				     SCMP_A0(SCMP_CMP_GT, AF_NETLINK)) < 0 ||
		    seccomp_rule_add(f, SCMP_ACT_ERRNO(EPROTONOSUPPORT), calls[i], 2,
				     SCMP_A0(SCMP_CMP_EQ, AF_NETLINK),
				     SCMP_A2(SCMP_CMP_NE, NETLINK_ROUTE)) < 0)
			return -1;
	}
	return 0;
}

/* Compiles f into args_insns and *prog. */
static int compile(scmp_filter_ctx f, struct sock_fprog *prog)
{
	int fd = memfd_create("bunker-seccomp", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	int r = -1;
	if (seccomp_export_bpf(f, fd) == 0 && fstat(fd, &st) == 0 && st.st_size > 0 &&
	    (size_t)st.st_size <= sizeof(args_insns) &&
	    st.st_size % sizeof(struct sock_filter) == 0 &&
	    pread(fd, args_insns, (size_t)st.st_size, 0) == st.st_size) {
		prog->len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
		prog->filter = args_insns;
		r = 0;
	}
	close(fd);
	return r;
}

int harden_init(void)
{
	char buf[16];
	if (read_file_small("/proc/sys/kernel/cap_last_cap", buf, sizeof(buf), NULL) > 0)
		cap_last = atoi(buf);
	if (build_calls(&progs[0]) < 0)
		return -1;
	/* libseccomp's default bad-arch action kills, as the call filter
	 * does. */
	scmp_filter_ctx f = seccomp_init(SCMP_ACT_ALLOW);
	if (f == NULL)
		return -1;
	int r = build_args(f);
	if (r == 0)
		r = compile(f, &progs[1]);
	seccomp_release(f);
	return r < 0 ? -1 : 0;
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
	/* The call filter first: once it is in, the seccomp call that loads
	 * the second is itself checked by it, and allowed. */
	for (int i = 0; i < 2; i++)
		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &progs[i]) < 0)
			return -1;
	return 0;
}
