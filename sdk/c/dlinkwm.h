/*
 * dlinkwm.h — the DlinkWM plugin SDK for C, as one header (ABI version 1).
 *
 * In exactly one C file of the plugin, define DLINKWM_IMPLEMENTATION before including it:
 *
 *     #define DLINKWM_IMPLEMENTATION
 *     #include "dlinkwm.h"
 *
 *     DLINKWM_ENTRY(greet) {
 *         char *name = dlinkwm_json_get_string(input.ptr, input.len, "name", NULL);
 *         if (!name) return dlinkwm_error("expected {\"name\": string}");
 *         ...
 *         return dlinkwm_output_json_string(answer, strlen(answer));
 *     }
 *
 * Build (Debian: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32):
 *
 *     clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wl,--strip-all -o plugin.wasm plugin.c
 *
 * The contract this header implements is docs/abi.md. Memory: the host hands every entry its
 * input in a buffer from dlinkwm_alloc, and DLINKWM_ENTRY frees it when the entry returns.
 * Everything the plugin hands the host is copied by the host, so the plugin keeps ownership.
 */
#ifndef DLINKWM_H
#define DLINKWM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- ABI constants ------------------------------------------------------------------------
 * Copied from crates/dlinkwm-abi/src/lib.rs, the one definition of the ABI; this block is the
 * only place in the C SDK where they are written, and the test
 * crates/dlinkwm-abi/tests/sdk_constants.rs checks that it matches. */
#define DLINKWM_ABI_VERSION 1
#define DLINKWM_IMPORT_MODULE "dlinkwm"
#define DLINKWM_ENTRY_OK 0
#define DLINKWM_ENTRY_ERROR 1
#define DLINKWM_FORMAT_RAW 0
#define DLINKWM_FORMAT_JSON 1
#define DLINKWM_FORMAT_POSTCARD 2
#define DLINKWM_STATUS_OK 0
#define DLINKWM_STATUS_ERROR 1
#define DLINKWM_STATUS_UNKNOWN_METHOD 2
#define DLINKWM_STATUS_PERMISSION_DENIED 3
#define DLINKWM_STATUS_UNSUPPORTED_FORMAT 4
#define DLINKWM_LOG_ERROR 0
#define DLINKWM_LOG_WARN 1
#define DLINKWM_LOG_INFO 2
#define DLINKWM_LOG_DEBUG 3
#define DLINKWM_LOG_TRACE 4
/* ---- end of ABI constants ---------------------------------------------------------------- */

/* The host's imports (module "dlinkwm"). Prefer the wrappers below. */
#define DLINKWM_IMPORT(name) __attribute__((import_module(DLINKWM_IMPORT_MODULE), import_name(#name)))
DLINKWM_IMPORT(set_output) void dlinkwm_raw_set_output(const void *ptr, size_t len);
DLINKWM_IMPORT(set_error) void dlinkwm_raw_set_error(const void *ptr, size_t len);
DLINKWM_IMPORT(host_call) int32_t dlinkwm_raw_host_call(const void *name, size_t name_len, int32_t format, const void *input, size_t input_len);
DLINKWM_IMPORT(host_result_len) size_t dlinkwm_raw_host_result_len(void);
DLINKWM_IMPORT(host_result_read) void dlinkwm_raw_host_result_read(void *dst);
DLINKWM_IMPORT(log) void dlinkwm_raw_log(int32_t level, const void *ptr, size_t len);

/* An entry's input: the bytes and the format the host chose (DLINKWM_FORMAT_*), which is also
 * the format the output must be in. */
typedef struct {
    const uint8_t *ptr;
    size_t len;
    int32_t format;
} dlinkwm_input;

/* A buffer the plugin owns (malloc'd); release it with dlinkwm_buffer_free. */
typedef struct {
    uint8_t *ptr;
    size_t len;
} dlinkwm_buffer;

/* Defines the entry `name`: exported under that name, with `input` in scope. Return
 * dlinkwm_output(...) or dlinkwm_error(...). */
#define DLINKWM_ENTRY(name)                                                                     \
    static int32_t dlinkwm_entry_##name(dlinkwm_input input);                                   \
    __attribute__((export_name(#name))) int32_t name(uint8_t *ptr, int32_t len, int32_t format) { \
        dlinkwm_input input = {ptr, (size_t)(uint32_t)len, format};                             \
        int32_t status = dlinkwm_entry_##name(input);                                           \
        if (ptr) dlinkwm_free(ptr, len);                                                        \
        return status;                                                                          \
    }                                                                                           \
    static int32_t dlinkwm_entry_##name(dlinkwm_input input)

/* The ABI's allocation exports (defined by DLINKWM_IMPLEMENTATION). */
uint8_t *dlinkwm_alloc(int32_t size);
void dlinkwm_free(uint8_t *ptr, int32_t size);

/* Sets the entry's output (copied by the host) and returns DLINKWM_ENTRY_OK. */
int32_t dlinkwm_output(const void *ptr, size_t len);
/* Sets a NUL-terminated string as the output, as it is (raw text). */
int32_t dlinkwm_output_str(const char *text);
/* Sets the output to `text` encoded as a JSON string. */
int32_t dlinkwm_output_json_string(const char *text, size_t len);
/* Sets the call's error message (printf-style) and returns DLINKWM_ENTRY_ERROR. */
int32_t dlinkwm_error(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Calls host method `method` with `input` in `format`. Returns a DLINKWM_STATUS_*; `answer`
 * receives the method's answer (on DLINKWM_STATUS_OK) or an error message (otherwise), which the
 * caller frees with dlinkwm_buffer_free. `answer` may be NULL to ignore it. */
int32_t dlinkwm_host_call(const char *method, int32_t format, const void *input, size_t input_len,
                          dlinkwm_buffer *answer);
void dlinkwm_buffer_free(dlinkwm_buffer *buffer);

/* Logs one line (printf-style) at `level` (DLINKWM_LOG_*), as a host `tracing` event. */
void dlinkwm_log(int32_t level, const char *format, ...) __attribute__((format(printf, 2, 3)));
#define DLINKWM_ERROR(...) dlinkwm_log(DLINKWM_LOG_ERROR, __VA_ARGS__)
#define DLINKWM_WARN(...) dlinkwm_log(DLINKWM_LOG_WARN, __VA_ARGS__)
#define DLINKWM_INFO(...) dlinkwm_log(DLINKWM_LOG_INFO, __VA_ARGS__)
#define DLINKWM_DEBUG(...) dlinkwm_log(DLINKWM_LOG_DEBUG, __VA_ARGS__)

/* JSON helpers, enough for flat objects of strings (C has no JSON library of its own).
 * dlinkwm_json_get_string: the string member `key` of the JSON object `json`, unescaped and
 * NUL-terminated (malloc'd; free it), or NULL when `json` is not an object, has no such member or
 * it is not a string. `out_len` (may be NULL) receives its length.
 * dlinkwm_json_parse_string: the same for a JSON document that is one string.
 * dlinkwm_json_quote: `text` as a JSON string literal, quoted and escaped (malloc'd). */
char *dlinkwm_json_get_string(const uint8_t *json, size_t len, const char *key, size_t *out_len);
char *dlinkwm_json_parse_string(const uint8_t *json, size_t len, size_t *out_len);
char *dlinkwm_json_quote(const char *text, size_t len, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif /* DLINKWM_H */

#ifdef DLINKWM_IMPLEMENTATION
#ifndef DLINKWM_IMPLEMENTED
#define DLINKWM_IMPLEMENTED

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((export_name("dlinkwm_abi_version"))) int32_t dlinkwm_abi_version(void) {
    return DLINKWM_ABI_VERSION;
}

__attribute__((export_name("dlinkwm_alloc"))) uint8_t *dlinkwm_alloc(int32_t size) {
    /* Zero-size requests get a real block, freed by the same rule (docs/abi.md §2). */
    return (uint8_t *)malloc(size > 0 ? (size_t)(uint32_t)size : 1);
}

__attribute__((export_name("dlinkwm_free"))) void dlinkwm_free(uint8_t *ptr, int32_t size) {
    (void)size;
    free(ptr);
}

int32_t dlinkwm_output(const void *ptr, size_t len) {
    dlinkwm_raw_set_output(ptr, len);
    return DLINKWM_ENTRY_OK;
}

int32_t dlinkwm_output_str(const char *text) { return dlinkwm_output(text, strlen(text)); }

int32_t dlinkwm_output_json_string(const char *text, size_t len) {
    size_t quoted_len = 0;
    char *quoted = dlinkwm_json_quote(text, len, &quoted_len);
    if (!quoted) return dlinkwm_error("out of memory encoding the output");
    dlinkwm_output(quoted, quoted_len);
    free(quoted);
    return DLINKWM_ENTRY_OK;
}

/* Formats into a malloc'd string; NULL when out of memory. */
static char *dlinkwm_vformat(const char *format, va_list args, size_t *out_len) {
    va_list copy;
    va_copy(copy, args);
    int needed = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    if (needed < 0) return NULL;
    char *text = (char *)malloc((size_t)needed + 1);
    if (!text) return NULL;
    vsnprintf(text, (size_t)needed + 1, format, args);
    *out_len = (size_t)needed;
    return text;
}

int32_t dlinkwm_error(const char *format, ...) {
    va_list args;
    va_start(args, format);
    size_t len = 0;
    char *message = dlinkwm_vformat(format, args, &len);
    va_end(args);
    if (message) {
        dlinkwm_raw_set_error(message, len);
        free(message);
    } else {
        dlinkwm_raw_set_error(format, strlen(format));
    }
    return DLINKWM_ENTRY_ERROR;
}

void dlinkwm_log(int32_t level, const char *format, ...) {
    va_list args;
    va_start(args, format);
    size_t len = 0;
    char *line = dlinkwm_vformat(format, args, &len);
    va_end(args);
    if (line) {
        dlinkwm_raw_log(level, line, len);
        free(line);
    }
}

int32_t dlinkwm_host_call(const char *method, int32_t format, const void *input, size_t input_len,
                          dlinkwm_buffer *answer) {
    int32_t status = dlinkwm_raw_host_call(method, strlen(method), format, input, input_len);
    if (answer) {
        size_t len = dlinkwm_raw_host_result_len();
        answer->ptr = (uint8_t *)malloc(len > 0 ? len : 1);
        answer->len = 0;
        if (!answer->ptr) return DLINKWM_STATUS_ERROR;
        dlinkwm_raw_host_result_read(answer->ptr);
        answer->len = len;
    }
    return status;
}

void dlinkwm_buffer_free(dlinkwm_buffer *buffer) {
    free(buffer->ptr);
    buffer->ptr = NULL;
    buffer->len = 0;
}

/* ---- JSON ---- */

typedef struct {
    const uint8_t *at;
    const uint8_t *end;
} dlinkwm_json_cursor;

static void dlinkwm_json_space(dlinkwm_json_cursor *c) {
    while (c->at < c->end && (*c->at == ' ' || *c->at == '\t' || *c->at == '\n' || *c->at == '\r'))
        c->at++;
}

static int dlinkwm_json_hex4(dlinkwm_json_cursor *c, uint32_t *value) {
    if (c->end - c->at < 4) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t h = c->at[i];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= (uint32_t)(h - '0');
        else if (h >= 'a' && h <= 'f') v |= (uint32_t)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') v |= (uint32_t)(h - 'A' + 10);
        else return 0;
    }
    c->at += 4;
    *value = v;
    return 1;
}

/* Reads a string at the cursor (which is on its opening quote). With `out` NULL it only skips.
 * `out` needs room for as many bytes as the literal has (unescaping never grows it). */
static int dlinkwm_json_string(dlinkwm_json_cursor *c, char *out, size_t *out_len) {
    if (c->at >= c->end || *c->at != '"') return 0;
    c->at++;
    size_t n = 0;
    while (c->at < c->end) {
        uint8_t b = *c->at++;
        if (b == '"') {
            if (out_len) *out_len = n;
            return 1;
        }
        if (b < 0x20) return 0;
        if (b != '\\') {
            if (out) out[n] = (char)b;
            n++;
            continue;
        }
        if (c->at >= c->end) return 0;
        uint8_t e = *c->at++;
        uint32_t cp;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (!dlinkwm_json_hex4(c, &cp)) return 0;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t low;
                if (c->end - c->at < 6 || c->at[0] != '\\' || c->at[1] != 'u') return 0;
                c->at += 2;
                if (!dlinkwm_json_hex4(c, &low) || low < 0xDC00 || low > 0xDFFF) return 0;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return 0;
            }
            break;
        default: return 0;
        }
        /* UTF-8 encode; never longer than the escape it came from. */
        char utf8[4];
        size_t k;
        if (cp < 0x80) { utf8[0] = (char)cp; k = 1; }
        else if (cp < 0x800) { utf8[0] = (char)(0xC0 | (cp >> 6)); utf8[1] = (char)(0x80 | (cp & 0x3F)); k = 2; }
        else if (cp < 0x10000) { utf8[0] = (char)(0xE0 | (cp >> 12)); utf8[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); utf8[2] = (char)(0x80 | (cp & 0x3F)); k = 3; }
        else { utf8[0] = (char)(0xF0 | (cp >> 18)); utf8[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); utf8[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); utf8[3] = (char)(0x80 | (cp & 0x3F)); k = 4; }
        if (out) memcpy(out + n, utf8, k);
        n += k;
    }
    return 0;
}

static int dlinkwm_json_skip_value(dlinkwm_json_cursor *c, int depth) {
    dlinkwm_json_space(c);
    if (c->at >= c->end || depth > 64) return 0;
    uint8_t b = *c->at;
    if (b == '"') return dlinkwm_json_string(c, NULL, NULL);
    if (b == '{' || b == '[') {
        uint8_t close = b == '{' ? '}' : ']';
        c->at++;
        dlinkwm_json_space(c);
        if (c->at < c->end && *c->at == close) { c->at++; return 1; }
        for (;;) {
            if (b == '{') {
                dlinkwm_json_space(c);
                if (!dlinkwm_json_string(c, NULL, NULL)) return 0;
                dlinkwm_json_space(c);
                if (c->at >= c->end || *c->at++ != ':') return 0;
            }
            if (!dlinkwm_json_skip_value(c, depth + 1)) return 0;
            dlinkwm_json_space(c);
            if (c->at >= c->end) return 0;
            uint8_t next = *c->at++;
            if (next == close) return 1;
            if (next != ',') return 0;
        }
    }
    /* A number or a literal: its characters up to a delimiter. */
    const uint8_t *start = c->at;
    while (c->at < c->end && strchr("+-.0123456789eEtruefalsn", *c->at) && *c->at) c->at++;
    return c->at > start;
}

static char *dlinkwm_json_take_string(dlinkwm_json_cursor *c, size_t *out_len) {
    dlinkwm_json_cursor probe = *c;
    size_t len = 0;
    if (!dlinkwm_json_string(&probe, NULL, &len)) return NULL;
    char *text = (char *)malloc(len + 1);
    if (!text) return NULL;
    dlinkwm_json_string(c, text, &len);
    text[len] = '\0';
    if (out_len) *out_len = len;
    return text;
}

char *dlinkwm_json_parse_string(const uint8_t *json, size_t len, size_t *out_len) {
    dlinkwm_json_cursor c = {json, json + len};
    dlinkwm_json_space(&c);
    char *text = dlinkwm_json_take_string(&c, out_len);
    dlinkwm_json_space(&c);
    if (text && c.at != c.end) {
        free(text);
        return NULL;
    }
    return text;
}

char *dlinkwm_json_get_string(const uint8_t *json, size_t len, const char *key, size_t *out_len) {
    dlinkwm_json_cursor c = {json, json + len};
    size_t key_len = strlen(key);
    dlinkwm_json_space(&c);
    if (c.at >= c.end || *c.at++ != '{') return NULL;
    dlinkwm_json_space(&c);
    if (c.at < c.end && *c.at == '}') return NULL;
    for (;;) {
        dlinkwm_json_space(&c);
        size_t name_len = 0;
        char *name = dlinkwm_json_take_string(&c, &name_len);
        if (!name) return NULL;
        int wanted = name_len == key_len && memcmp(name, key, key_len) == 0;
        free(name);
        dlinkwm_json_space(&c);
        if (c.at >= c.end || *c.at++ != ':') return NULL;
        dlinkwm_json_space(&c);
        if (wanted) return c.at < c.end && *c.at == '"' ? dlinkwm_json_take_string(&c, out_len) : NULL;
        if (!dlinkwm_json_skip_value(&c, 0)) return NULL;
        dlinkwm_json_space(&c);
        if (c.at >= c.end || *c.at++ != ',') return NULL;
    }
}

char *dlinkwm_json_quote(const char *text, size_t len, size_t *out_len) {
    /* Worst case: every byte becomes \u00XX (6 bytes), plus the quotes and the NUL. */
    char *out = (char *)malloc(len * 6 + 3);
    if (!out) return NULL;
    size_t n = 0;
    out[n++] = '"';
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)text[i];
        switch (b) {
        case '"': out[n++] = '\\'; out[n++] = '"'; break;
        case '\\': out[n++] = '\\'; out[n++] = '\\'; break;
        case '\n': out[n++] = '\\'; out[n++] = 'n'; break;
        case '\r': out[n++] = '\\'; out[n++] = 'r'; break;
        case '\t': out[n++] = '\\'; out[n++] = 't'; break;
        default:
            if (b < 0x20) {
                n += (size_t)snprintf(out + n, 7, "\\u%04x", b);
            } else {
                out[n++] = (char)b;
            }
        }
    }
    out[n++] = '"';
    out[n] = '\0';
    if (out_len) *out_len = n;
    return out;
}

#endif /* DLINKWM_IMPLEMENTED */
#endif /* DLINKWM_IMPLEMENTATION */
