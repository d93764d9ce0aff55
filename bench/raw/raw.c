/* raw: the physical limit of this machine for a supervisor's work, as a reference.
 *
 *   raw N CMD...   fork/exec N copies of CMD, then loop on waitpid(2): a child that dies is
 *                  replaced at once (waitpid, then fork/exec). On SIGTERM, send SIGTERM to every
 *                  child, reap them all, and exit 0.
 *
 * No pipes, no logging, no state: the least any supervisor can do. Children get stdin and
 * stdout from raw itself (the bench points them at /dev/null).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t *kids;
static long n;
static volatile sig_atomic_t stopping;
static sigset_t child_mask; /* the mask raw started with: children get it, not SIGTERM blocked */

static void on_term(int sig) {
    (void)sig;
    stopping = 1;
    for (long i = 0; i < n; i++)
        if (kids[i] > 0) kill(kids[i], SIGTERM);
}

static pid_t spawn(char **argv) {
    pid_t pid = fork();
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &child_mask, NULL);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: raw N CMD [ARG...]\n");
        return 2;
    }
    n = atol(argv[1]);
    kids = calloc(n, sizeof *kids);
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigfillset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &old);
    child_mask = old;
    for (long i = 0; i < n; i++) kids[i] = spawn(argv + 2);
    sigprocmask(SIG_SETMASK, &old, NULL);
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break; /* ECHILD: everyone is reaped */
        }
        sigprocmask(SIG_BLOCK, &block, &old);
        for (long i = 0; i < n; i++) {
            if (kids[i] == pid) {
                kids[i] = stopping ? 0 : spawn(argv + 2);
                break;
            }
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
    }
    return 0;
}
