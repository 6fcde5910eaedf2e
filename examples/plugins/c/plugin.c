/* The C example plugin: `greet` takes {"name": ...} in JSON, asks the host method `custom_greet`
 * for a greeting, and answers with a sentence built from it (the Rust `hello` example's
 * behaviour). Build: clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wl,--strip-all
 *                     -o hello_c.wasm plugin.c */
#define DLINKWM_IMPLEMENTATION
#include "../../../sdk/c/dlinkwm.h"

#include <stdlib.h>
#include <string.h>

static const char GREETING[] = "hello plugin greets";

DLINKWM_ENTRY(greet) {
    if (input.format != DLINKWM_FORMAT_JSON)
        return dlinkwm_error("greet speaks JSON only (format %d asked)", (int)input.format);
    size_t name_len = 0;
    char *name = dlinkwm_json_get_string(input.ptr, input.len, "name", &name_len);
    if (!name) return dlinkwm_error("expected a JSON object {\"name\": string}");
    DLINKWM_DEBUG("greet called for %s", name);

    /* {"name": <name>} for the host method. */
    size_t quoted_len = 0;
    char *quoted = dlinkwm_json_quote(name, name_len, &quoted_len);
    char *params = quoted ? (char *)malloc(quoted_len + 10) : NULL;
    if (!params) {
        free(name);
        free(quoted);
        return dlinkwm_error("out of memory");
    }
    memcpy(params, "{\"name\":", 8);
    memcpy(params + 8, quoted, quoted_len);
    params[8 + quoted_len] = '}';
    free(quoted);

    dlinkwm_buffer answer;
    int32_t status = dlinkwm_host_call("custom_greet", DLINKWM_FORMAT_JSON, params, quoted_len + 9, &answer);
    free(params);
    if (status != DLINKWM_STATUS_OK) {
        /* The host method's error is a value: hand it on as this entry's error. */
        int32_t result = dlinkwm_error("%.*s", (int)answer.len, (const char *)answer.ptr);
        dlinkwm_buffer_free(&answer);
        free(name);
        return result;
    }
    size_t said_len = 0;
    char *said = dlinkwm_json_parse_string(answer.ptr, answer.len, &said_len);
    dlinkwm_buffer_free(&answer);
    if (!said) {
        free(name);
        return dlinkwm_error("custom_greet did not answer with a JSON string");
    }

    size_t sentence_len = strlen(GREETING) + 1 + name_len + 17 + said_len;
    char *sentence = (char *)malloc(sentence_len + 1);
    int32_t result;
    if (sentence) {
        size_t n = 0;
        memcpy(sentence + n, GREETING, strlen(GREETING)); n += strlen(GREETING);
        sentence[n++] = ' ';
        memcpy(sentence + n, name, name_len); n += name_len;
        memcpy(sentence + n, "; the host said: ", 17); n += 17;
        memcpy(sentence + n, said, said_len); n += said_len;
        result = dlinkwm_output_json_string(sentence, n);
        free(sentence);
    } else {
        result = dlinkwm_error("out of memory");
    }
    free(said);
    free(name);
    return result;
}
