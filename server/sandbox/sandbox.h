/*
 * sandbox.h - decoders of third-party libraries run in worker processes.
 *
 * OpenJPEG aborts on assertions, CharLS 2.4.1 can loop forever, GDCM's JPEG
 * aborts on some headers: a hostile codestream must not take the server
 * down or hold a thread forever. So frames of those syntaxes are decoded by
 * `yingyun-codec-worker` processes (started when first needed, fresh
 * executables, not forks of the threaded server; the server process itself
 * does not even load GDCM): a request goes over a socket, the pixels
 * come back; a worker that crashes, or exceeds the time limit, is killed and
 * replaced, and the request fails with -EBADMSG. Workers exit when the
 * server closes their socket (or dies), and run under an address-space
 * limit.
 *
 * Owns: the worker processes and their sockets. Thread-safe.
 */
#ifndef YY_SANDBOX_H
#define YY_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

struct sandbox;

/* Prepares up to n workers running exe (yingyun-codec-worker), started on
 * first use. timeout_ms bounds one decode. Returns 0, or -errno when exe
 * cannot be executed. */
int sandbox_start(const char *exe, unsigned n, unsigned timeout_ms, struct sandbox **out);
void sandbox_stop(struct sandbox *s);

/* True when ts is decoded by a library we isolate. */
bool sandbox_wanted(const char *ts_uid);

/* codec_decode() in a worker: same contract. */
int sandbox_decode(struct sandbox *s, const char *ts_uid, const struct codec_image *img,
                   const uint8_t *data, size_t len, unsigned first_bit, uint8_t *out,
                   size_t out_cap, struct codec_out *info, char *err, size_t err_cap);

/* The worker side: serves requests on fd until it closes. */
int sandbox_worker_main(int fd);

/* Workers replaced so far (for tests and the status page). */
unsigned sandbox_restarts(struct sandbox *s);

#endif
