// gateway-open-loop: an open-loop HTTP/1.1 load client for bench:gateway (like
// wrk2, which Debian does not ship). Compiled at bench time by
// bench/gateway-open-loop.ts; never committed as a binary.
//
// Why open loop: a closed or bursty client (wrk, h2load's --rps, which sends
// each connection's requests together once a second-tick) makes many
// connections send at the same instant, so the proxy drains a burst and the
// last request of it waits for all the others: the p99 then measures the
// burst, not what the proxy adds. Here request k is due at t0 + k / RATE,
// evenly spaced over all connections, and its latency is measured from that
// due time, not from when it was written: a request that waits for a free
// connection (because the target is slow) counts that wait too, so a slow
// target cannot hide behind a client that politely waits for it
// ("coordinated omission").
//
//   gateway-open-loop -r RATE -d SECONDS [-w WARMUP] [-c CONNECTIONS]
//                     [-H "Name: value"]... http://127.0.0.1:PORT/PATH
//
// Prints one JSON object on stdout: the rate, the requests scheduled in the
// measured window, sent, answered ok (2xx), non2xx, errors (socket errors and
// requests unanswered 5 s after the window), and p50/p90/p99/p999/max latency
// in µs from the due time; sendDelayP99 is how late requests were written
// (waiting for a free connection, or the client itself late), clientLagP99
// how long they waited with a connection free for them: the client itself
// late, on a busy machine (a figure is then the machine's). Requests due in
// the warm-up are sent but not counted. One connection carries one request at
// a time (no pipelining); HTTP/1.1 keep-alive, Content-Length or chunked
// answers of up to 64 KiB.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 1024
#define BUFFER 65536
/** How long answers are awaited after the last due time before they count as errors. */
#define DRAIN_NS (5 * 1000000000LL)

struct connection {
  int fd;
  int busy;              /* a request is written (or being written) and unanswered */
  int64_t due;           /* the due time of that request, ns */
  int measured;          /* whether it counts (due after the warm-up) */
  size_t written;        /* bytes of the request written so far */
  int64_t free_since;    /* when it last became free (opened, or its answer read), ns */
  char in[BUFFER];       /* the response read so far */
  size_t have;
};

static struct sockaddr_in target;
static char request[8192];
static size_t request_length;
static struct connection connections[MAX_CONNECTIONS];
static int connection_count = 16;
static int epoll_fd;

/* Results of the measured window. */
static uint32_t *latencies;     /* µs from the due time, per answered request */
static uint32_t *send_delays;   /* µs from the due time to the write */
static uint32_t *client_lags;   /* µs from when the request could have been written (due, a connection free) to the write */
static int64_t answered, ok, non2xx, errors, sent;

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void die(const char *what) {
  perror(what);
  exit(2);
}

/** Connects connection `c` (blocking connect: to a local target it takes microseconds), then non-blocking. */
static void open_connection(struct connection *c) {
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0) die("socket");
  if (connect(c->fd, (struct sockaddr *)&target, sizeof target) != 0) die("connect");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl");
  c->busy = 0;
  c->have = 0;
  c->free_since = now_ns();
}

/** The connection failed or was closed: its request (if any) is lost (an error); a new connection takes its place. */
static void reopen(struct connection *c) {
  epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  open_connection(c);
}

/** Writes what is left of the request; waits for EPOLLOUT when the socket is full. */
static void write_request(struct connection *c) {
  while (c->written < request_length) {
    ssize_t n = write(c->fd, request + c->written, request_length - c->written);
    if (n > 0) {
      c->written += (size_t)n;
    } else if (n < 0 && errno == EAGAIN) {
      struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
      epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
      return;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      reopen(c);
      return;
    }
  }
}

static void send_on(struct connection *c, int64_t due, int measured) {
  c->busy = 1;
  c->due = due;
  c->measured = measured;
  c->written = 0;
  if (measured) {
    int64_t now = now_ns(), ready = due > c->free_since ? due : c->free_since;
    int64_t delay = (now - due) / 1000, lag = (now - ready) / 1000;
    client_lags[sent] = lag < 0 ? 0 : (uint32_t)lag;
    send_delays[sent++] = delay < 0 ? 0 : (uint32_t)delay;
  }
  write_request(c);
}

/**
 * The length of the complete response at the start of `buf`, 0 when more is
 * needed, -1 when it cannot be parsed. Sets *status and *closes (the server
 * said Connection: close). Parsed from the start each time: bodies are small.
 */
static long response_length(const char *buf, size_t len, int *status, int *closes) {
  const char *end = memmem(buf, len, "\r\n\r\n", 4);
  if (!end) return len >= BUFFER ? -1 : 0;
  if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0) return -1;
  *status = atoi(buf + 9);
  *closes = 0;
  long content_length = -1;
  int chunked = 0;
  /* The status line's end (with no headers, the \n of the blank line's first CRLF). */
  for (const char *line = (const char *)memchr(buf, '\n', (size_t)(end - buf) + 2) + 1; line < end;) {
    const char *eol = memchr(line, '\n', (size_t)(end + 2 - line));
    if (!eol) break;
    if (strncasecmp(line, "content-length:", 15) == 0) content_length = atol(line + 15);
    else if (strncasecmp(line, "transfer-encoding:", 18) == 0 && memmem(line, (size_t)(eol - line), "chunked", 7))
      chunked = 1;
    else if (strncasecmp(line, "connection:", 11) == 0 && memmem(line, (size_t)(eol - line), "close", 5))
      *closes = 1;
    line = eol + 1;
  }
  size_t at = (size_t)(end - buf) + 4;
  if (!chunked) {
    if (content_length < 0) content_length = 0; /* a bench response always says its length */
    return at + (size_t)content_length <= len ? (long)(at + (size_t)content_length) : 0;
  }
  for (;;) { /* chunks: hex size CRLF data CRLF ... 0 CRLF CRLF (no trailers) */
    const char *eol = memmem(buf + at, len - at, "\r\n", 2);
    if (!eol) return 0;
    long size = strtol(buf + at, NULL, 16);
    at = (size_t)(eol - buf) + 2;
    if (at + (size_t)size + 2 > len) return 0;
    at += (size_t)size + 2;
    if (size == 0) return (long)at;
  }
}

/** Reads what the target sent on `c`; a complete response frees the connection. */
static void read_response(struct connection *c) {
  for (;;) {
    ssize_t n = read(c->fd, c->in + c->have, BUFFER - c->have);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      reopen(c);
      return;
    }
    if (n < 0) return;
    c->have += (size_t)n;
    int status = 0, closes = 0;
    long length = response_length(c->in, c->have, &status, &closes);
    if (length < 0 || (length > 0 && !c->busy)) {
      fprintf(stderr, "gateway-open-loop: a response that cannot be read, or one nobody asked for\n");
      reopen(c);
      return;
    }
    if (length == 0) continue;
    int64_t now = now_ns();
    c->free_since = now;
    if (c->measured) {
      int64_t micros = (now - c->due) / 1000;
      latencies[answered++] = (uint32_t)micros;
      if (status >= 200 && status < 300) ok++;
      else non2xx++;
    }
    c->busy = 0;
    memmove(c->in, c->in + length, c->have - (size_t)length);
    c->have -= (size_t)length;
    if (closes) {
      c->measured = 0; /* already counted */
      reopen(c);
    }
    return;
  }
}

static int compare(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static uint32_t at(const uint32_t *sorted, int64_t n, double q) {
  if (n == 0) return 0;
  int64_t i = (int64_t)(q * (double)n);
  return sorted[i >= n ? n - 1 : i];
}

static void usage(void) {
  fprintf(stderr, "usage: gateway-open-loop -r RATE -d SECONDS [-w WARMUP] [-c CONNECTIONS] [-H 'Name: value']... http://HOST:PORT/PATH\n");
  exit(2);
}

int main(int argc, char **argv) {
  double rate = 0, seconds = 0, warmup = 0;
  char headers[4096] = "";
  int opt;
  while ((opt = getopt(argc, argv, "r:d:w:c:H:")) != -1) {
    switch (opt) {
    case 'r': rate = atof(optarg); break;
    case 'd': seconds = atof(optarg); break;
    case 'w': warmup = atof(optarg); break;
    case 'c': connection_count = atoi(optarg); break;
    case 'H':
      if (strlen(headers) + strlen(optarg) + 3 >= sizeof headers) usage();
      strcat(headers, optarg);
      strcat(headers, "\r\n");
      break;
    default: usage();
    }
  }
  if (optind != argc - 1 || rate <= 0 || seconds <= 0 || warmup < 0 || connection_count < 1 ||
      connection_count > MAX_CONNECTIONS)
    usage();
  char host[256], path[2048] = "/";
  int port;
  if (sscanf(argv[optind], "http://%255[0-9.]:%d%2047s", host, &port, path) < 2) usage();
  target.sin_family = AF_INET;
  target.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &target.sin_addr) != 1) usage();
  /* Host is the URL's unless -H gives one (a proxy routes by it). */
  char default_host[300] = "";
  if (strncasecmp(headers, "host:", 5) != 0 && !strcasestr(headers, "\r\nhost:"))
    snprintf(default_host, sizeof default_host, "Host: %s:%d\r\n", host, port);
  request_length = (size_t)snprintf(request, sizeof request, "GET %s HTTP/1.1\r\n%s%s\r\n", path, default_host, headers);

  int64_t interval = (int64_t)(1e9 / rate);
  int64_t warm = (int64_t)(warmup * rate), total = warm + (int64_t)(seconds * rate);
  latencies = calloc((size_t)(total - warm + 1), sizeof *latencies);
  send_delays = calloc((size_t)(total - warm + 1), sizeof *send_delays);
  client_lags = calloc((size_t)(total - warm + 1), sizeof *client_lags);
  if (!latencies || !send_delays || !client_lags) die("calloc");

  epoll_fd = epoll_create1(0);
  if (epoll_fd < 0) die("epoll_create1");
  for (int i = 0; i < connection_count; i++) open_connection(&connections[i]);

  /* A periodic timer at the schedule's spacing wakes the loop when requests fall due. */
  int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  if (timer < 0) die("timerfd_create");
  struct itimerspec every = {.it_interval = {interval / 1000000000LL, interval % 1000000000LL},
                             .it_value = {0, 1}};
  timerfd_settime(timer, 0, &every, NULL);
  struct epoll_event timer_event = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(epoll_fd, EPOLL_CTL_ADD, timer, &timer_event);

  int64_t t0 = now_ns();
  int64_t next = 0;  /* the next request to send, by its index in the schedule */
  int cursor = 0;    /* where the search for an idle connection starts (round robin) */
  int ticking = 1;
  int64_t end = t0 + total * interval, deadline = end + DRAIN_NS;
  struct epoll_event events[64];
  for (;;) {
    int64_t now = now_ns();
    /* Every request now due goes out on an idle connection; those without one wait (their latency runs). */
    while (next < total && t0 + next * interval <= now) {
      struct connection *idle = NULL;
      for (int i = 0; i < connection_count && !idle; i++) {
        struct connection *c = &connections[(cursor + i) % connection_count];
        if (!c->busy) idle = c;
      }
      if (!idle) break;
      cursor = (int)(idle - connections + 1) % connection_count;
      send_on(idle, t0 + next * interval, next >= warm);
      next++;
    }
    int outstanding = 0;
    for (int i = 0; i < connection_count; i++) outstanding += connections[i].busy && connections[i].measured;
    if (next >= total && outstanding == 0) break;
    if (now > deadline) break;
    if (next >= total && ticking) { /* the schedule is done: no more ticks needed */
      struct itimerspec off = {0};
      timerfd_settime(timer, 0, &off, NULL);
      ticking = 0;
    }
    int n = epoll_wait(epoll_fd, events, 64, 100);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      struct connection *c = events[i].data.ptr;
      if (!c) {
        uint64_t ticks;
        if (read(timer, &ticks, sizeof ticks) < 0 && errno != EAGAIN) die("read timerfd");
        continue;
      }
      if (events[i].events & EPOLLOUT) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
        write_request(c);
      }
      /* A hang-up or an error is read too: what arrived before it first, then the end (read_response reopens). */
      if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) read_response(c);
    }
  }
  /* Errors: requests lost with their connection, never sent, or unanswered by the deadline. */
  int64_t scheduled = total - warm;
  errors = scheduled - answered;

  qsort(latencies, (size_t)answered, sizeof *latencies, compare);
  qsort(send_delays, (size_t)sent, sizeof *send_delays, compare);
  qsort(client_lags, (size_t)sent, sizeof *client_lags, compare);
  printf("{\"rate\":%.3f,\"seconds\":%.3f,\"connections\":%d,\"scheduled\":%lld,\"sent\":%lld,\"ok\":%lld,"
         "\"non2xx\":%lld,\"errors\":%lld,\"p50\":%u,\"p90\":%u,\"p99\":%u,\"p999\":%u,\"max\":%u,"
         "\"sendDelayP99\":%u,\"clientLagP99\":%u}\n",
         rate, seconds, connection_count, (long long)scheduled, (long long)sent, (long long)ok, (long long)non2xx,
         (long long)errors, at(latencies, answered, 0.5), at(latencies, answered, 0.9), at(latencies, answered, 0.99),
         at(latencies, answered, 0.999), answered ? latencies[answered - 1] : 0, at(send_delays, sent, 0.99),
         at(client_lags, sent, 0.99));
  return 0;
}
