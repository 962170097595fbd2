// sendfile(2) from a file to a non-blocking socket, for @berthjs/sendfile (see src/index.ts).
//
// Each transfer works on its own duplicates of both descriptors, so neither can be closed or
// reused under it. Steps run on libuv's threadpool, because sendfile blocks while the kernel
// reads pages that are not cached; a step sends until the socket buffer is full (EAGAIN), then
// the main thread waits for the socket to become writable (uv_poll on the duplicate) and queues
// the next step. A slow client therefore holds no thread while it is not reading.
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/sendfile.h>

#define FILE_ENDED (-1) // the file is shorter than the range asked for

typedef struct {
  napi_env env;
  napi_ref callback; // (error: Error | null, sent: number) => void, called once
  napi_async_work work;
  uv_poll_t poll;
  int socket_fd, file_fd;
  off_t offset;
  int64_t remaining;
  atomic_llong sent;  // written by the step on the threadpool, read by progress() on the main thread
  int error; // errno of the failure, FILE_ENDED, or 0
  atomic_int cancelled;
  int waiting;  // poll active
  int tearing;  // the environment (a worker thread, say) is shutting down
} transfer_t;

static void queue_step(transfer_t* t);

static void run_step(napi_env env, void* data) {
  (void)env;
  transfer_t* t = data;
  while (t->remaining > 0 && !atomic_load(&t->cancelled)) {
    size_t count = t->remaining > 0x40000000 ? 0x40000000 : (size_t)t->remaining;
    ssize_t n = sendfile(t->socket_fd, t->file_fd, &t->offset, count);
    if (n > 0) {
      t->remaining -= n;
      atomic_fetch_add(&t->sent, n);
    } else if (n == 0) {
      t->error = FILE_ENDED;
      return;
    } else if (errno != EINTR) {
      if (errno != EAGAIN) t->error = errno;
      return;
    }
  }
}

static void on_closed(uv_handle_t* handle) {
  transfer_t* t = handle->data;
  close(t->socket_fd);
  close(t->file_fd);
  free(t);
}

static void on_teardown(void* data);

static void finish(napi_env env, transfer_t* t) {
  if (!t->tearing) napi_remove_env_cleanup_hook(env, on_teardown, t);
  napi_value callback, global, argv[2];
  napi_get_reference_value(env, t->callback, &callback);
  napi_get_global(env, &global);
  if (t->error == 0 && atomic_load(&t->cancelled)) t->error = ECANCELED;
  if (t->error == 0) {
    napi_get_null(env, &argv[0]);
  } else {
    napi_value message, code;
    const char* text = t->error == FILE_ENDED ? "file ended before the range did" : strerror(t->error);
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &argv[0]);
    napi_create_int32(env, t->error == FILE_ENDED ? 0 : t->error, &code);
    napi_set_named_property(env, argv[0], "errno", code);
  }
  napi_create_int64(env, (int64_t)atomic_load(&t->sent), &argv[1]);
  napi_delete_reference(env, t->callback);
  uv_close((uv_handle_t*)&t->poll, on_closed);
  napi_call_function(env, global, callback, 2, argv, NULL);
}

// The environment is going away with this transfer still open (a worker thread terminated
// mid-download): its loop may not close with our poll handle open, so close it now. A step on
// the threadpool finishes first, since Node drains outstanding work before it tears down.
static void on_teardown(void* data) {
  transfer_t* t = data;
  t->tearing = 1;
  atomic_store(&t->cancelled, 1);
  if (t->waiting) {
    uv_poll_stop(&t->poll);
    t->waiting = 0;
    napi_delete_reference(t->env, t->callback);
    uv_close((uv_handle_t*)&t->poll, on_closed);
  }
}

static void on_writable(uv_poll_t* poll, int status, int events) {
  (void)status;
  (void)events;
  transfer_t* t = poll->data;
  uv_poll_stop(poll);
  t->waiting = 0;
  // An error on the socket shows as the next sendfile's errno. Outside any JS call, so the
  // handles queue_step makes need a scope of their own.
  napi_handle_scope scope;
  napi_open_handle_scope(t->env, &scope);
  queue_step(t);
  napi_close_handle_scope(t->env, scope);
}

static void step_done(napi_env env, napi_status status, void* data) {
  transfer_t* t = data;
  napi_delete_async_work(env, t->work);
  t->work = NULL;
  if (status != napi_ok && t->error == 0) t->error = ECANCELED;
  if (t->remaining == 0 || t->error != 0 || atomic_load(&t->cancelled)) {
    finish(env, t);
    return;
  }
  t->waiting = 1;
  int rc = uv_poll_start(&t->poll, UV_WRITABLE | UV_DISCONNECT, on_writable);
  if (rc != 0) {
    t->waiting = 0;
    t->error = -rc;
    finish(env, t);
  }
}

static void queue_step(transfer_t* t) {
  napi_value name;
  napi_create_string_utf8(t->env, "berth:sendfile", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(t->env, NULL, name, run_step, step_done, t, &t->work);
  napi_queue_async_work(t->env, t->work);
}

static napi_value throw_errno(napi_env env, const char* what, int error) {
  char text[160];
  snprintf(text, sizeof text, "%s: %s", what, strerror(error));
  napi_throw_error(env, NULL, text);
  return NULL;
}

// start(socketFd, fileFd, offset, length, callback) -> handle for cancel()
static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t socket_fd, file_fd;
  int64_t offset, length;
  if (argc < 5 || napi_get_value_int32(env, argv[0], &socket_fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &file_fd) != napi_ok || napi_get_value_int64(env, argv[2], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[3], &length) != napi_ok || offset < 0 || length < 0) {
    napi_throw_type_error(env, NULL, "start(socketFd, fileFd, offset, length, callback)");
    return NULL;
  }
  transfer_t* t = calloc(1, sizeof *t);
  if (!t) return throw_errno(env, "sendfile", ENOMEM);
  t->env = env;
  t->offset = offset;
  t->remaining = length;
  t->socket_fd = fcntl(socket_fd, F_DUPFD_CLOEXEC, 0);
  t->file_fd = t->socket_fd < 0 ? -1 : fcntl(file_fd, F_DUPFD_CLOEXEC, 0);
  if (t->file_fd < 0) {
    int error = errno;
    if (t->socket_fd >= 0) close(t->socket_fd);
    free(t);
    return throw_errno(env, "sendfile: dup", error);
  }
  uv_loop_t* loop;
  napi_get_uv_event_loop(env, &loop);
  int rc = uv_poll_init(loop, &t->poll, t->socket_fd);
  if (rc != 0) {
    close(t->socket_fd);
    close(t->file_fd);
    free(t);
    return throw_errno(env, "sendfile: poll", -rc);
  }
  t->poll.data = t;
  napi_create_reference(env, argv[4], 1, &t->callback);
  napi_add_env_cleanup_hook(env, on_teardown, t);
  queue_step(t);
  napi_value handle;
  napi_create_external(env, t, NULL, NULL, &handle);
  return handle;
}

// The transfer a call's one argument names (a handle from start), or NULL with a TypeError thrown.
static transfer_t* transfer_arg(napi_env env, napi_callback_info info, const char* usage) {
  size_t argc = 1;
  napi_value argv[1];
  void* data;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  return data;
}

// cancel(handle): stop a transfer whose callback has not run yet; the callback gets ECANCELED.
static napi_value cancel(napi_env env, napi_callback_info info) {
  transfer_t* t = transfer_arg(env, info, "cancel(handle)");
  if (!t) return NULL;
  atomic_store(&t->cancelled, 1);
  if (t->waiting) {
    uv_poll_stop(&t->poll);
    t->waiting = 0;
    queue_step(t); // returns at once and finishes with ECANCELED
  }
  return NULL;
}

// progress(handle) -> bytes sent so far, for a transfer whose callback has not run yet (after
// it, the handle's memory is gone). Lets the caller end a transfer the client stopped reading.
static napi_value progress(napi_env env, napi_callback_info info) {
  transfer_t* t = transfer_arg(env, info, "progress(handle)");
  if (!t) return NULL;
  napi_value sent;
  napi_create_int64(env, (int64_t)atomic_load(&t->sent), &sent);
  return sent;
}
#endif

static napi_value init(napi_env env, napi_value exports) {
#ifdef __linux__
  napi_value fn;
  napi_create_function(env, "start", NAPI_AUTO_LENGTH, start, NULL, &fn);
  napi_set_named_property(env, exports, "start", fn);
  napi_create_function(env, "cancel", NAPI_AUTO_LENGTH, cancel, NULL, &fn);
  napi_set_named_property(env, exports, "cancel", fn);
  napi_create_function(env, "progress", NAPI_AUTO_LENGTH, progress, NULL, &fn);
  napi_set_named_property(env, exports, "progress", fn);
#endif
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
