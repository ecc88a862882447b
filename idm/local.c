/* local.c: the local IDM transport. The broker listens on one unix socket per pod; on accept it
 * creates a sealed memfd (header + two rings) and two eventfds and hands them to the client with
 * SCM_RIGHTS, together with the hello. The pod is known from the socket, never from a message. */
#include "idm.h"
#include "idm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define HDR_AREA 4096u

static int local_notify(struct idm_chan *ch)
{
    uint64_t one = 1;
    ssize_t n = write(ch->efd_notify, &one, sizeof one);
    if (n < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

static int local_wait(struct idm_chan *ch, int timeout_ms)
{
    struct pollfd pfd[2] = { { .fd = ch->efd_wait, .events = POLLIN },
                             { .fd = ch->sock_fd, .events = POLLRDHUP } };
    int n = poll(pfd, 2, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    if (n == 0)
        return -ETIMEDOUT;
    if (pfd[1].revents & (POLLHUP | POLLRDHUP | POLLERR))
        return -EPIPE;
    if (pfd[0].revents & POLLIN) {
        uint64_t v;
        if (read(ch->efd_wait, &v, sizeof v) < 0 && errno != EAGAIN)
            return -errno;
    }
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void local_close(struct idm_chan *ch)
{
    close_fd(&ch->sock_fd);
    close_fd(&ch->efd_wait);
    close_fd(&ch->efd_notify);
    close_fd(&ch->shm_fd);
}

static const struct idm_transport_ops local_ops = {
    .name = "local", .notify = local_notify, .wait = local_wait, .close = local_close,
};

void idm_chan_close(struct idm_chan *ch)
{
    if (ch == NULL)
        return;
    if (ch->ops != NULL)
        ch->ops->close(ch);
    if (ch->shm != NULL)
        munmap(ch->shm, ch->shm_size);
    free(ch);
}

static struct idm_chan *chan_new(void)
{
    struct idm_chan *ch = calloc(1, sizeof *ch);
    if (ch == NULL)
        return NULL;
    ch->ops = &local_ops;
    ch->sock_fd = ch->efd_wait = ch->efd_notify = ch->shm_fd = ch->evt_fd = -1;
    return ch;
}

void idm_chan_map_rings(struct idm_chan *ch)
{
    struct idm_hello *h = &ch->hello;
    ch->hdr = (struct idm_shm_hdr *)ch->shm;
    ch->max_msg = h->max_msg;
    if (ch->role == IDM_ROLE_BROKER) {
        idm_ring_init(&ch->rx, &ch->hdr->req, ch->shm + h->req_off, h->req_size);
        idm_ring_init(&ch->tx, &ch->hdr->rep, ch->shm + h->rep_off, h->rep_size);
    } else {
        idm_ring_init(&ch->tx, &ch->hdr->req, ch->shm + h->req_off, h->req_size);
        idm_ring_init(&ch->rx, &ch->hdr->rep, ch->shm + h->rep_off, h->rep_size);
    }
}

int idm_local_listen(const char *path, int *fd_out, struct idm_err *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return idm_err_set(err, -ENAMETOOLONG, "listen %s: path too long", path);
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return idm_err_set(err, -errno, "listen %s: socket: %s", path, strerror(errno));
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        (void)unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(path, 0666) < 0 ||
        listen(fd, 128) < 0) {
        int e = errno;
        close(fd);
        return idm_err_set(err, -e, "listen %s: %s", path, strerror(e));
    }
    *fd_out = fd;
    return 0;
}

/* $VGPU_IDM_MAX_MSG (a TEST KNOB, read by the broker): the largest message of local channels, so
 * that the paths for big images and long function lists (which the Xen transport's 256 KiB
 * messages take) run on a real GPU without Xen and in CI. 1024 .. IDM_MAX_MSG, multiple of 16. */
static uint32_t local_max_msg(void)
{
    const char *e = getenv("VGPU_IDM_MAX_MSG");
    char *end;
    unsigned long v = e != NULL ? strtoul(e, &end, 10) : 0;
    if (e == NULL || *e == '\0' || *end != '\0' || v < 1024 || v > IDM_MAX_MSG || v % 16 != 0)
        return IDM_MAX_MSG;
    return (uint32_t)v;
}

static int make_shm(struct idm_chan *ch, struct idm_err *err)
{
    struct idm_hello *h = &ch->hello;
    h->req_off = HDR_AREA;
    h->req_size = IDM_REQ_RING_SIZE;
    h->rep_off = h->req_off + h->req_size;
    h->rep_size = IDM_REP_RING_SIZE;
    h->shm_size = h->rep_off + h->rep_size;
    h->max_msg = local_max_msg();
    ch->shm_fd = memfd_create("vgpu-idm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (ch->shm_fd < 0)
        return idm_err_set(err, -errno, "memfd_create: %s", strerror(errno));
    /* Sealed so that the client cannot shrink it under the broker's mapping (SIGBUS). */
    if (ftruncate(ch->shm_fd, (off_t)h->shm_size) < 0 ||
        fcntl(ch->shm_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        return idm_err_set(err, -errno, "memfd size/seal: %s", strerror(errno));
    void *p = mmap(NULL, h->shm_size, PROT_READ | PROT_WRITE, MAP_SHARED, ch->shm_fd, 0);
    if (p == MAP_FAILED)
        return idm_err_set(err, -errno, "mmap channel: %s", strerror(errno));
    ch->shm = p;
    ch->shm_size = h->shm_size;
    ch->hdr = p;
    ch->hdr->magic = IDM_MAGIC;
    ch->hdr->version = IDM_PROTO_VERSION;
    /* Nobody serves the ring yet: the client must ring the doorbell for its first message. */
    atomic_store(&ch->hdr->req.consumer_sleeping, 1);
    return 0;
}

int idm_local_accept(int lfd, const struct idm_hello *hello, struct idm_chan **out,
                     struct idm_err *err)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
            return -EAGAIN;
        return idm_err_set(err, -errno, "accept: %s", strerror(errno));
    }
    struct idm_chan *ch = chan_new();
    if (ch == NULL) {
        close(fd);
        return idm_err_set(err, -ENOMEM, "accept: out of memory");
    }
    ch->role = IDM_ROLE_BROKER;
    ch->sock_fd = fd;
    ch->hello = *hello;
    ch->hello.magic = IDM_MAGIC;
    ch->hello.version = IDM_PROTO_VERSION;
    int efd_client = -1, rc = make_shm(ch, err);
    if (rc < 0)
        goto fail;
    ch->efd_wait = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    efd_client = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ch->efd_wait < 0 || efd_client < 0) {
        rc = idm_err_set(err, -errno, "eventfd: %s", strerror(errno));
        goto fail;
    }
    /* fds: [0] shared memory, [1] client's doorbell (it waits), [2] broker's doorbell */
    int fds[3] = { ch->shm_fd, efd_client, ch->efd_wait };
    union { char buf[CMSG_SPACE(sizeof fds)]; struct cmsghdr align; } cbuf;
    memset(&cbuf, 0, sizeof cbuf);
    struct iovec iov = { .iov_base = &ch->hello, .iov_len = sizeof ch->hello };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
                         .msg_controllen = sizeof cbuf.buf };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(cm), fds, sizeof fds);
    ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n != (ssize_t)sizeof ch->hello) {
        rc = idm_err_set(err, n < 0 ? -errno : -EIO, "send hello: %s",
                         n < 0 ? strerror(errno) : "short write");
        goto fail;
    }
    ch->efd_notify = efd_client;
    close_fd(&ch->shm_fd); /* the mapping stays */
    idm_chan_map_rings(ch);
    *out = ch;
    return 0;
fail:
    if (efd_client >= 0)
        close(efd_client);
    idm_chan_close(ch);
    return rc;
}

int idm_local_connect(const char *path, struct idm_chan **out, struct idm_err *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return idm_err_set(err, -ENAMETOOLONG, "connect %s: path too long", path);
    strcpy(sa.sun_path, path);
    struct idm_chan *ch = chan_new();
    if (ch == NULL)
        return idm_err_set(err, -ENOMEM, "connect: out of memory");
    ch->role = IDM_ROLE_CLIENT;
    int rc;
    ch->sock_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ch->sock_fd < 0 || connect(ch->sock_fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        rc = idm_err_set(err, -errno, "connect %s: %s", path, strerror(errno));
        goto fail;
    }
    struct timeval tv = { .tv_sec = 10 };
    (void)setsockopt(ch->sock_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int fds[3];
    union { char buf[CMSG_SPACE(sizeof fds)]; struct cmsghdr align; } cbuf;
    struct iovec iov = { .iov_base = &ch->hello, .iov_len = sizeof ch->hello };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
                         .msg_controllen = sizeof cbuf.buf };
    ssize_t n = recvmsg(ch->sock_fd, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
    if (cm == NULL || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof fds)) {
        rc = idm_err_set(err, -EPROTO, "connect %s: no hello from broker", path);
        goto fail;
    }
    memcpy(fds, CMSG_DATA(cm), sizeof fds);
    ch->shm_fd = fds[0];
    ch->efd_wait = fds[1];
    ch->efd_notify = fds[2];
    struct idm_hello *h = &ch->hello;
    struct stat st;
    if (n != (ssize_t)sizeof *h || (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) ||
        h->magic != IDM_MAGIC || h->version != IDM_PROTO_VERSION) {
        rc = idm_err_set(err, -EPROTO, "connect %s: bad hello (version %u, want %u)", path,
                         h->version, IDM_PROTO_VERSION);
        goto fail;
    }
    if (fstat(ch->shm_fd, &st) < 0 || (uint64_t)st.st_size != h->shm_size ||
        h->req_off < sizeof(struct idm_shm_hdr) || h->req_off + h->req_size > h->rep_off ||
        h->rep_off + h->rep_size > h->shm_size || (h->req_size & (h->req_size - 1)) ||
        (h->rep_size & (h->rep_size - 1)) || h->max_msg > h->req_size / 2 ||
        h->max_msg > h->rep_size / 2) {
        rc = idm_err_set(err, -EPROTO, "connect %s: bad channel layout", path);
        goto fail;
    }
    void *p = mmap(NULL, h->shm_size, PROT_READ | PROT_WRITE, MAP_SHARED, ch->shm_fd, 0);
    if (p == MAP_FAILED) {
        rc = idm_err_set(err, -errno, "connect %s: mmap: %s", path, strerror(errno));
        goto fail;
    }
    ch->shm = p;
    ch->shm_size = h->shm_size;
    close_fd(&ch->shm_fd);
    h->pod_id[IDM_POD_ID_MAX - 1] = 0;
    h->device_name[IDM_NAME_MAX - 1] = 0;
    idm_chan_map_rings(ch);
    *out = ch;
    return 0;
fail:
    idm_chan_close(ch);
    return rc;
}

int idm_local_send_fd(struct idm_chan *ch, int fd, struct idm_err *err)
{
    char byte = 'F';
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } cbuf;
    memset(&cbuf, 0, sizeof cbuf);
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
                         .msg_controllen = sizeof cbuf.buf };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    if (sendmsg(ch->sock_fd, &mh, MSG_NOSIGNAL) != 1)
        return idm_err_set(err, -errno, "send fd: %s", strerror(errno));
    return 0;
}

int idm_local_recv_fd(struct idm_chan *ch, int *fd_out)
{
    char byte;
    union { char buf[CMSG_SPACE(4 * sizeof(int))]; struct cmsghdr align; } cbuf;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
                         .msg_controllen = sizeof cbuf.buf };
    ssize_t n = recvmsg(ch->sock_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return errno == EAGAIN ? -EAGAIN : -errno;
    int got = -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int f;
            memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof f);
            if (got < 0)
                got = f;
            else
                close(f); /* only one fd per message is accepted */
        }
    }
    if (n == 0 || got < 0 || (mh.msg_flags & MSG_CTRUNC)) {
        if (got >= 0)
            close(got);
        return -EPROTO;
    }
    *fd_out = got;
    return 0;
}
