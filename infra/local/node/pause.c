/*
 * ferryman's sandbox ("pause") program: the first process of every pod sandbox the
 * test node runs. It holds the sandbox's namespaces open by staying alive, reaps
 * any child re-parented to it (it is PID 1 of the pod when the pod shares a PID
 * namespace), and exits 0 on SIGINT or SIGTERM.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_stop(int signo)
{
	(void)signo;
	stopping = 1;
}

static void on_child(int signo)
{
	int saved = errno;
	(void)signo;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static int handle(int signo, void (*handler)(int), int flags)
{
	struct sigaction action;

	memset(&action, 0, sizeof action);
	action.sa_handler = handler;
	action.sa_flags = flags;
	sigemptyset(&action.sa_mask);
	return sigaction(signo, &action, NULL);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("ferryman-pause 1");
		return 0;
	}
	if (getpid() != 1)
		/* Not an error: it still works, but it reaps only its own children. */
		fprintf(stderr, "ferryman-pause: running as pid %d, not 1\n", (int)getpid());

	/* Block the stop signals outside sigsuspend so that one arriving between the
	 * test of `stopping` and the wait is not lost. */
	sigset_t stop_signals, waiting;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &stop_signals, &waiting) ||
	    handle(SIGINT, on_stop, 0) || handle(SIGTERM, on_stop, 0) ||
	    handle(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART)) {
		perror("ferryman-pause: signals");
		return 1;
	}
	sigdelset(&waiting, SIGINT);
	sigdelset(&waiting, SIGTERM);
	while (!stopping)
		sigsuspend(&waiting);
	return 0;
}
