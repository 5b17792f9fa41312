/* exec.c — runs one command in its own process group and sees it to its end.
 *
 * The calling (runner) thread forks, then polls the child's stdout and stderr pipes, a
 * pidfd for the leader's exit and an eventfd that wk_proc_cancel writes; output goes into a
 * wk_log_t as it arrives (read into a 64 KiB stack buffer, never accumulated). Timeout and
 * cancel send SIGTERM to the whole group, SIGKILL after the grace. When the leader exits,
 * members it left behind are killed once the pipes close or after 1 s: a step owns its
 * group and nothing of it outlives the step. Not a sandbox: no namespaces, no rlimits. */
#include "workers/worker.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

#define LINGER_MS 1000 /* after the leader exits, how long its group may keep the pipes open */

int wk_proc_init(wk_proc_t *p) {
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return p->wake_fd < 0 ? WEIR_EIO : 0;
}

void wk_proc_close(wk_proc_t *p) {
    if (p->wake_fd >= 0) close(p->wake_fd);
    p->wake_fd = -1;
    pthread_mutex_destroy(&p->mu);
}

void wk_proc_cancel(wk_proc_t *p, const char *reason) {
    pthread_mutex_lock(&p->mu);
    if (!atomic_load(&p->cancelled)) {
        snprintf(p->reason, sizeof p->reason, "%s", reason ? reason : "cancelled");
        atomic_store(&p->cancelled, 1);
        /* SIGTERM from here, not from the runner: the runner may be busy shipping a log
         * chunk, and a cancel must reach the step within milliseconds. */
        if (p->pgid > 0) kill(-p->pgid, SIGTERM);
    }
    pthread_mutex_unlock(&p->mu);
    uint64_t one = 1;
    if (write(p->wake_fd, &one, sizeof one) < 0) { /* already signalled; the counter is full */ }
}

static void tail_add(char *tail, size_t size, const char *data, size_t n) {
    size_t have = strlen(tail), keep = size - 1;
    if (n >= keep) {
        memcpy(tail, data + n - keep, keep);
        tail[keep] = '\0';
        return;
    }
    if (have + n > keep) {
        size_t drop = have + n - keep;
        memmove(tail, tail + drop, have - drop);
        have -= drop;
    }
    memcpy(tail + have, data, n);
    tail[have + n] = '\0';
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child(const wk_exec_spec_t *s, int out_w, int err_w, int status_w) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    int sigs[] = {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &dfl, NULL);
    setpgid(0, 0);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0 && devnull != 0) { dup2(devnull, 0); close(devnull); }
    dup2(out_w, 1);
    dup2(err_w, 2);
    int e = 0;
    if (s->cwd && chdir(s->cwd)) e = errno;
    if (!e) {
        /* every descriptor of the worker (sockets, other steps' pipes) stays out of the step;
         * status_w is close-on-exec and reports a failed exec */
        if (syscall(SYS_close_range, 3, status_w - 1, 0) || syscall(SYS_close_range, status_w + 1, ~0U, 0)) {
            long max = sysconf(_SC_OPEN_MAX);
            if (max < 0 || max > 65536) max = 65536;
            for (int fd = 3; fd < max; fd++)
                if (fd != status_w) close(fd);
        }
        execvpe(s->argv[0], s->argv, s->envp);
        e = errno;
    }
    ssize_t w = write(status_w, &e, sizeof e);
    (void)w;
    _exit(127);
}

int wk_exec_run(const wk_exec_spec_t *s, wk_proc_t *p, wk_exec_result_t *r) {
    memset(r, 0, sizeof *r);
    r->exit_code = -1;
    uint64_t start = weir_now_ms();
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, stp[2] = {-1, -1};
    if (!s->argv || !s->argv[0]) {
        r->end = WK_EXEC_START_FAILED;
        snprintf(r->error, sizeof r->error, "exec step has an empty command");
        return WEIR_EINVAL;
    }
    if (pipe2(outp, O_CLOEXEC) || pipe2(errp, O_CLOEXEC) || pipe2(stp, O_CLOEXEC)) {
        r->end = WK_EXEC_START_FAILED;
        snprintf(r->error, sizeof r->error, "cannot create pipes: %s", strerror(errno));
        for (int i = 0; i < 2; i++) {
            if (outp[i] >= 0) close(outp[i]);
            if (errp[i] >= 0) close(errp[i]);
            if (stp[i] >= 0) close(stp[i]);
        }
        return WEIR_EIO;
    }
    pthread_mutex_lock(&p->mu);
    if (atomic_load(&p->cancelled)) {
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < 2; i++) { close(outp[i]); close(errp[i]); close(stp[i]); }
        r->end = WK_EXEC_CANCELLED;
        snprintf(r->error, sizeof r->error, "%s", p->reason);
        return 0;
    }
    pid_t pid = fork();
    if (pid == 0) child(s, outp[1], errp[1], stp[1]);
    if (pid > 0) {
        setpgid(pid, pid); /* also in the parent, so a kill right after fork reaches the group */
        p->pgid = pid;
    }
    pthread_mutex_unlock(&p->mu);
    close(outp[1]);
    close(errp[1]);
    close(stp[1]);
    if (pid < 0) {
        close(outp[0]); close(errp[0]); close(stp[0]);
        r->end = WK_EXEC_START_FAILED;
        snprintf(r->error, sizeof r->error, "cannot fork: %s", strerror(errno));
        return WEIR_EIO;
    }
    int e = 0;
    ssize_t got;
    do got = read(stp[0], &e, sizeof e); while (got < 0 && errno == EINTR);
    close(stp[0]);
    if (got == (ssize_t)sizeof e) {
        int st;
        waitpid(pid, &st, 0);
        pthread_mutex_lock(&p->mu);
        p->pgid = 0;
        pthread_mutex_unlock(&p->mu);
        close(outp[0]);
        close(errp[0]);
        r->end = WK_EXEC_START_FAILED;
        snprintf(r->error, sizeof r->error, "cannot run \"%.200s\"%s%.200s: %s", s->argv[0], s->cwd ? " in " : "",
                 s->cwd ? s->cwd : "", strerror(e));
        return WEIR_ENOENT;
    }

    fcntl(outp[0], F_SETFL, O_NONBLOCK);
    fcntl(errp[0], F_SETFL, O_NONBLOCK);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int64_t grace = s->kill_grace_ms > 0 ? s->kill_grace_ms : 5000;
    uint64_t deadline = s->timeout_ms > 0 ? start + (uint64_t)s->timeout_ms : 0;
    uint64_t term_at = 0, killed_at = 0, reaped_at = 0;
    int fds_open[2] = {outp[0], errp[0]};
    int reaped = 0, status = 0, escalated = 0;
    char buf[65536];
    for (;;) {
        uint64_t now = weir_now_ms();
        /* what decides the end */
        if (!term_at && atomic_load(&p->cancelled)) {
            term_at = now; /* wk_proc_cancel sent SIGTERM already */
            if (r->end != WK_EXEC_TIMED_OUT) r->end = WK_EXEC_CANCELLED;
        }
        if (!term_at && deadline && now >= deadline && !reaped) {
            term_at = now;
            r->end = WK_EXEC_TIMED_OUT;
            kill(-pid, SIGTERM);
        }
        if (term_at && !killed_at && now >= term_at + (uint64_t)grace) {
            killed_at = now;
            escalated = 1;
            kill(-pid, SIGKILL);
        }
        if (!reaped) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid) {
                reaped = 1;
                reaped_at = now;
                if (pidfd >= 0) { close(pidfd); pidfd = -1; }
            }
        }
        if (reaped && fds_open[0] < 0 && fds_open[1] < 0) break;
        if (reaped && now >= reaped_at + LINGER_MS) {
            if (!killed_at) {
                killed_at = now;
                kill(-pid, SIGKILL); /* members the leader left behind, holding its pipes */
            } else if (now >= killed_at + LINGER_MS) {
                break; /* a member escaped the group (setsid) and keeps the pipe: stop reading */
            }
        }
        if (s->log) wk_log_tick(s->log, now, 0);

        int timeout = 1000;
        if (s->log) { int d = wk_log_due_in(s->log, now); if (d >= 0 && d < timeout) timeout = d; }
        if (deadline && !term_at) { int64_t d = (int64_t)(deadline - now); if (d < timeout) timeout = d < 0 ? 0 : (int)d; }
        if (term_at && !killed_at) {
            int64_t d = (int64_t)(term_at + (uint64_t)grace - now);
            if (d < timeout) timeout = d < 0 ? 0 : (int)d;
        }
        if (reaped) {
            int64_t d = (int64_t)((killed_at ? killed_at : reaped_at) + LINGER_MS - now);
            if (d < timeout) timeout = d < 0 ? 0 : (int)d;
        }
        if (!reaped && pidfd < 0 && timeout > 20) timeout = 20; /* no pidfd: poll waitpid */
        struct pollfd pf[4];
        int n = 0;
        for (int i = 0; i < 2; i++)
            if (fds_open[i] >= 0) pf[n++] = (struct pollfd){.fd = fds_open[i], .events = POLLIN};
        int wake_i = n;
        pf[n++] = (struct pollfd){.fd = p->wake_fd, .events = POLLIN};
        if (pidfd >= 0) pf[n++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
        if (poll(pf, (nfds_t)n, timeout) < 0 && errno != EINTR) break;
        if (pf[wake_i].revents & POLLIN) {
            uint64_t v;
            if (read(p->wake_fd, &v, sizeof v) < 0) { /* nothing to drain */ }
        }
        for (int i = 0; i < 2; i++) {
            if (fds_open[i] < 0) continue;
            /* a bounded number of reads per turn, so a flood cannot starve the timers */
            for (int k = 0; k < 16; k++) {
                ssize_t m = read(fds_open[i], buf, sizeof buf);
                if (m > 0) {
                    if (s->log) wk_log_write(s->log, buf, (size_t)m);
                    if (i == 1) tail_add(r->tail, sizeof r->tail, buf, (size_t)m);
                    continue;
                }
                if (m == 0 || (errno != EAGAIN && errno != EINTR)) {
                    close(fds_open[i]);
                    fds_open[i] = -1;
                }
                break;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds_open[i] >= 0) close(fds_open[i]);
    if (pidfd >= 0) close(pidfd);
    if (!reaped) {
        kill(-pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    pthread_mutex_lock(&p->mu);
    /* the last word on the group, before its id may be reused */
    kill(-pid, SIGKILL);
    p->pgid = 0;
    pthread_mutex_unlock(&p->mu);
    if (s->log) wk_log_tick(s->log, weir_now_ms(), 1);

    r->duration_ms = (int64_t)(weir_now_ms() - start);
    if (WIFEXITED(status)) {
        r->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        r->signal = WTERMSIG(status);
        r->exit_code = 128 + r->signal;
    }
    if (r->end == WK_EXEC_TIMED_OUT) {
        snprintf(r->error, sizeof r->error, "timed out after %lld ms%s", (long long)s->timeout_ms,
                 escalated ? " (killed with SIGKILL: SIGTERM was not enough)" : "");
    } else if (r->end == WK_EXEC_CANCELLED) {
        pthread_mutex_lock(&p->mu);
        snprintf(r->error, sizeof r->error, "%s", p->reason);
        pthread_mutex_unlock(&p->mu);
    } else if (WIFSIGNALED(status)) {
        r->end = WK_EXEC_SIGNALED;
        snprintf(r->error, sizeof r->error, "killed by signal %d (%s)", r->signal, strsignal(r->signal));
    } else {
        r->end = WK_EXEC_EXITED;
        if (r->exit_code) snprintf(r->error, sizeof r->error, "exited with status %d", r->exit_code);
    }
    return 0;
}

void wk_proc_kill_now(wk_proc_t *p) {
    pthread_mutex_lock(&p->mu);
    if (!atomic_load(&p->cancelled)) snprintf(p->reason, sizeof p->reason, "the worker was stopped");
    atomic_store(&p->cancelled, 1);
    if (p->pgid > 0) kill(-p->pgid, SIGKILL);
    pthread_mutex_unlock(&p->mu);
    uint64_t one = 1;
    if (write(p->wake_fd, &one, sizeof one) < 0) { /* already signalled */ }
}
