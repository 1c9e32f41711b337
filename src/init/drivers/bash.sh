# Bunker's bash driver: the rc file of the session's persistent shell,
#   bash --noprofile --noediting --rcfile /opt/bunker/drivers/bash.sh -i
#
# bunker-init speaks to it over two pipes (src/init/interp_int.h): requests
# on fd 60, "<seq> <length> <timeout ms>\n" and then the program text;
# answers on fd 61, "R" once ready and "D <seq> <status>" once a request has
# run. The shell's stdin is a pipe whose write end it holds itself, on
# fd 62.
#
# Why an interactive shell: SIGINT makes an interactive bash abandon the
# command it runs, loops of builtins included, and go back to its top level
# with the shell and its state intact, which is how init interrupts a run
# past its timeout; a non-interactive one would exit. Its loop: it reads a
# (empty) line from stdin, then, before the next "prompt", runs
# PROMPT_COMMAND, which reports the last run, writes itself the next empty
# line, reads the next request from fd 60 and evals it. The eval runs at
# the top level (not in a function), so `cd`, `export`, variables, `declare`,
# functions and aliases stay; and inside PROMPT_COMMAND, where bash is not
# interactive, so it neither prints job numbers for `cmd &` nor "exit" on
# `exit`. `exit N` ends the shell with N and init starts a new one.
#
# The code runs as the condition of an `if`, so that `set -e` cannot end the
# shell (an interactive bash exits on errexit): bash ignores errexit there,
# so `set -e` has no effect inside a run. A run's stdin is /dev/null.

set +o history
unset HISTFILE MAILCHECK PROMPT_COMMAND
PS1=''
PS2=''
__bunker_seq=0
__bunker_rc=
__bunker_code=

__bunker_read() {
	local header seq len
	IFS= read -r header <&60 || builtin exit 0
	seq=${header%% *}
	len=${header#* }
	len=${len%% *}
	if [[ ! $seq =~ ^[0-9]+$ || ! $len =~ ^[0-9]+$ ]]; then
		printf 'E bad header\n' >&61
		builtin exit 125
	fi
	__bunker_seq=$seq
	__bunker_code=
	__bunker_rc=
	if ((len > 0)); then
		# -N counts characters: in the C locale, bytes.
		LC_ALL=C IFS= read -r -d '' -N "$len" __bunker_code <&60
	fi
}

__bunker_report() {
	local status=$?
	[[ -n $__bunker_rc ]] && status=$__bunker_rc
	if ((__bunker_seq > 0)); then
		printf 'D %s %s\n' "$__bunker_seq" "$status" >&61
	else
		printf 'R\n' >&61
	fi
	printf '\n' >&62
}

# Interrupted (SIGINT), the whole line is abandoned: $? is 130 at the next
# report and __bunker_rc empty. A SIGINT that arrives between runs abandons
# the read instead; its report repeats the last seq, which init ignores.
# The driver's own steps go to /dev/null under `set -x`.
PROMPT_COMMAND='{ __bunker_report; __bunker_read; } 2>/dev/null; if eval "$__bunker_code" </dev/null; then __bunker_rc=0; else __bunker_rc=$?; fi'
