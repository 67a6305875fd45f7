/* sipcore._speedups: compiled versions of the message layer's hot paths.
 *
 * Optional. Every function here has a pure-Python twin that stays the
 * reference (sipcore/_message.py, _headers.py, _uri.py, _hashing.py); the
 * package uses this module when it was built and SIPCORE_PURE_PYTHON is
 * not set. tests/test_speedups.py checks, on generated and mutated input,
 * that each function gives what its twin gives.
 *
 * The shape matchers accept exactly the language of the Python patterns
 * they replace (_VIA, _NAME_ADDR, _SIP, PLAIN_PARAMS), for ASCII text
 * only: any other input goes to the Python function, so this module never
 * decides a case the Python code would decide differently. Every loop is
 * bounded by the length of its input; nothing is stored between calls but
 * the classes and functions configure() was given.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* -- what configure() sets ------------------------------------------------ */

static PyTypeObject *via_type, *address_type, *sipuri_type, *params_type, *cseq_type;
static PyObject *empty_params, *missing;
static PyObject *via_transport, *via_host, *via_port, *via_params, *via_protocol;
static PyObject *addr_uri, *addr_display, *addr_params;
static PyObject *sip_host, *sip_user, *sip_password, *sip_port, *sip_params,
    *sip_headers, *sip_scheme, *sip_text;
static PyObject *params_text_slot;
static PyObject *cseq_number, *cseq_method;
static PyTypeObject *request_type, *response_type, *lazy_type;
static PyObject *m_lines, *m_keys, *m_eols, *m_sep, *m_cache, *m_defects;
static PyObject *rq_method, *rq_uri_text, *rq_version, *rs_status, *rs_reason, *rs_version;
static PyObject *lv_key, *lv_texts, *lv_parse, *lv_from_lines, *lv_items, *unparsed;
static PyObject *methods_set, *list_fallback;
static PyObject *via_fallback, *address_fallback, *uri_fallback, *cseq_fallback,
    *line_value_fallback;

/* Interned constants. */
static PyObject *str_crlf2, *str_content_length;
static PyObject *str_sip20, *str_sip, *str_sips, *str_start, *str_text, *str_get,
    *empty_tuple;

/* -- character classes (ASCII) ---------------------------------------------- */

enum {
    C_TOKEN = 1,      /* RFC 3261 token */
    C_HOST = 2,       /* [A-Za-z0-9._-] */
    C_SPACE = 4,      /* what Python's \s matches below 0x80 */
    C_DIGIT = 8,
    C_PNAME = 16,     /* a plain header parameter name: [^;="%\s] */
    C_PVALUE = 32,    /* a plain header parameter value: [^;"%\s] */
    C_UNAME = 64,     /* a plain URI parameter name: [^;="%\s@?<>\x00] */
    C_UVALUE = 128,   /* a plain URI parameter value: [^;"%\s@?<>\x00] */
    C_USER = 256,     /* the plain user part: [^:@;?%\s<>"\x00] */
    C_ANGLE = 512,    /* inside <...>: [^<>"\s] */
};

static unsigned short cls[128];

static void
init_classes(void)
{
    for (int c = 0; c < 128; c++) {
        unsigned short m = 0;
        int alnum = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        int space = (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c == ' ';
        if (alnum || (c && strchr("-.!%*_+`'~", c)))
            m |= C_TOKEN;
        if (alnum || c == '.' || c == '_' || c == '-')
            m |= C_HOST;
        if (space)
            m |= C_SPACE;
        if (c >= '0' && c <= '9')
            m |= C_DIGIT;
        if (!space && c != ';' && c != '"' && c != '%') {
            m |= C_PVALUE;
            if (c != '=')
                m |= C_PNAME;
            if (c != '@' && c != '?' && c != '<' && c != '>' && c != 0) {
                m |= C_UVALUE;
                if (c != '=')
                    m |= C_UNAME;
            }
        }
        if (!space && c && !strchr(":@;?%<>\"", c))
            m |= C_USER;
        if (!space && c != '<' && c != '>' && c != '"')
            m |= C_ANGLE;
        cls[c] = m;
    }
}

/* Characters are bytes below 0x80 here: callers pass ASCII text only. */
#define IS(ch, m) (cls[(unsigned char)(ch)] & (m))

/* The end of a run of characters of class m starting at i (i itself if none). */
static Py_ssize_t
run(const char *s, Py_ssize_t i, Py_ssize_t n, unsigned short m)
{
    while (i < n && IS(s[i], m))
        i++;
    return i;
}

/* PLAIN_PARAMS (name_m, value_m: C_PNAME/C_PVALUE or C_UNAME/C_UVALUE) from
 * i: name[=value] pairs joined by single ';', names non-empty. True when it
 * runs to exactly n. */
static int
plain_params_to_end(const char *s, Py_ssize_t i, Py_ssize_t n, unsigned short name_m,
                    unsigned short value_m)
{
    for (;;) {
        Py_ssize_t j = run(s, i, n, name_m);
        if (j == i)
            return 0;
        if (j < n && s[j] == '=')
            j = run(s, j + 1, n, value_m);
        if (j == n)
            return 1;
        if (s[j] != ';')
            return 0;
        i = j + 1;
    }
}

/* The port digits at s[i:j] (1 to 5 of them) as an int; -1 above 65535. */
static long
port_value(const char *s, Py_ssize_t i, Py_ssize_t j)
{
    long v = 0;
    for (; i < j; i++)
        v = v * 10 + (s[i] - '0');
    return v <= 65535 ? v : -1;
}

/* host[:port][;params] from i to exactly n: the tail the Via and SIP URI
 * shapes share. 1 with the host at [*h0, *h1), *port (-2: none) and
 * *pstart (-1: no parameters) set; 0 when the text has another shape. */
static int
hostport_params_to_end(const char *s, Py_ssize_t i, Py_ssize_t n, unsigned short name_m,
                       unsigned short value_m, Py_ssize_t *h0, Py_ssize_t *h1, long *port,
                       Py_ssize_t *pstart)
{
    *h0 = i;
    *h1 = run(s, i, n, C_HOST);
    if (*h1 == *h0)
        return 0;
    i = *h1;
    *port = -2;
    if (i < n && s[i] == ':') {
        Py_ssize_t p1 = run(s, i + 1, n, C_DIGIT);
        if (p1 == i + 1 || p1 - (i + 1) > 5)
            return 0;
        *port = port_value(s, i + 1, p1);
        if (*port < 0)
            return 0;
        i = p1;
    }
    *pstart = -1;
    if (i < n) {
        if (s[i] != ';' || !plain_params_to_end(s, i + 1, n, name_m, value_m))
            return 0;
        *pstart = i + 1;
    }
    return 1;
}

/* -- building values ---------------------------------------------------------- */

static int
set_slot(PyObject *descr, PyObject *obj, PyObject *value)
{
    /* A slot's own setter: what the Python fast paths call as
     * Cls.__dict__[name].__set__ (frozen classes refuse setattr). */
    return Py_TYPE(descr)->tp_descr_set(descr, obj, value);
}

/* set_slot that consumes a new reference (NULL: an error already set). */
static int
set_slot_steal(PyObject *descr, PyObject *obj, PyObject *value)
{
    if (value == NULL)
        return -1;
    int rc = set_slot(descr, obj, value);
    Py_DECREF(value);
    return rc;
}

static PyObject *
new_instance(PyTypeObject *type)
{
    return type->tp_alloc(type, 0);
}

static PyObject *
ascii_slice(const char *s, Py_ssize_t i, Py_ssize_t j)
{
    PyObject *out = PyUnicode_New(j - i, 127);
    if (out != NULL)
        memcpy(PyUnicode_DATA(out), s + i, (size_t)(j - i));
    return out;
}

/* plain_params(text[i:]) or EMPTY_PARAMS when i == -1. */
static PyObject *
make_params(PyObject *text, const char *s, Py_ssize_t i, Py_ssize_t n)
{
    if (i < 0) {
        Py_INCREF(empty_params);
        return empty_params;
    }
    PyObject *params = new_instance(params_type);
    if (params == NULL)
        return NULL;
    PyObject *ptext = (i == 0) ? (Py_INCREF(text), text) : ascii_slice(s, i, n);
    if (set_slot_steal(params_text_slot, params, ptext) < 0) {
        Py_DECREF(params);
        return NULL;
    }
    return params;
}

static int
ready(int ok)
{
    if (!ok)
        PyErr_SetString(PyExc_RuntimeError, "sipcore._speedups: this function is not configured");
    return ok;
}

#define PARAMS_READY (params_type && empty_params)

/* -- Via ------------------------------------------------------------------------ */

static PyObject *
build_via(PyObject *text, const char *s, Py_ssize_t n)
{
    /* SIP/2\.0/([token]++) ([A-Za-z0-9._-]++)(?::([0-9]{1,5}+))?(?:;(PLAIN))? */
    if (n < 8 || memcmp(s, "SIP/2.0/", 8) != 0)
        return NULL;
    Py_ssize_t t0 = 8, t1 = run(s, t0, n, C_TOKEN);
    if (t1 == t0 || t1 >= n || s[t1] != ' ')
        return NULL;
    Py_ssize_t h0, h1, pstart;
    long port;
    if (!hostport_params_to_end(s, t1 + 1, n, C_PNAME, C_PVALUE, &h0, &h1, &port, &pstart))
        return NULL;
    PyObject *via = new_instance(via_type);
    if (via == NULL)
        return NULL;
    if (set_slot_steal(via_transport, via, ascii_slice(s, t0, t1)) < 0
        || set_slot_steal(via_host, via, ascii_slice(s, h0, h1)) < 0
        || set_slot_steal(via_port, via,
                          port == -2 ? (Py_INCREF(Py_None), Py_None) : PyLong_FromLong(port)) < 0
        || set_slot_steal(via_params, via, make_params(text, s, pstart, n)) < 0
        || set_slot(via_protocol, via, str_sip20) < 0) {
        Py_DECREF(via);
        return NULL;
    }
    return via;
}

/* Fast shape or fallback: NULL from a builder with no error set means "not
 * this shape". */
static PyObject *
fast_or_fallback(PyObject *text, PyObject *(*build)(PyObject *, const char *, Py_ssize_t),
                 PyObject *fallback, PyObject *const *args, Py_ssize_t nargs)
{
    if (PyUnicode_Check(text) && PyUnicode_IS_ASCII(text)) {
        PyObject *out = build(text, (const char *)PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text));
        if (out != NULL || PyErr_Occurred())
            return out;
    }
    return PyObject_Vectorcall(fallback, args, nargs, NULL);
}

static PyObject *
sp_parse_via(PyObject *self, PyObject *text)
{
    if (!ready(via_type && via_fallback && PARAMS_READY))
        return NULL;
    return fast_or_fallback(text, build_via, via_fallback, &text, 1);
}

/* -- name-addr --------------------------------------------------------------------- */

static PyObject *
build_address(PyObject *text, const char *s, Py_ssize_t n)
{
    /* (?:"([^"\\]*+)"\s*+)?<([^<>"\s]++)>(?:\s*+;(PLAIN))? */
    Py_ssize_t i = 0, q0 = -1, q1 = -1;
    if (n > 0 && s[0] == '"') {
        Py_ssize_t j = 1;
        while (j < n && s[j] != '"' && s[j] != '\\')
            j++;
        if (j >= n || s[j] != '"')
            return NULL; /* a backslash or no closing quote: the careful parser */
        q0 = 1;
        q1 = j;
        i = run(s, j + 1, n, C_SPACE);
    }
    if (i >= n || s[i] != '<')
        return NULL;
    Py_ssize_t u0 = i + 1, u1 = run(s, u0, n, C_ANGLE);
    if (u1 == u0 || u1 >= n || s[u1] != '>')
        return NULL;
    i = u1 + 1;
    Py_ssize_t pstart = -1;
    if (i < n) {
        i = run(s, i, n, C_SPACE);
        if (i >= n || s[i] != ';' || !plain_params_to_end(s, i + 1, n, C_PNAME, C_PVALUE))
            return NULL;
        pstart = i + 1;
    }
    PyObject *address = new_instance(address_type);
    if (address == NULL)
        return NULL;
    if (set_slot_steal(addr_uri, address, ascii_slice(s, u0, u1)) < 0
        || set_slot_steal(addr_display, address,
                          q0 < 0 ? (Py_INCREF(Py_None), Py_None) : ascii_slice(s, q0, q1)) < 0
        || set_slot_steal(addr_params, address, make_params(text, s, pstart, n)) < 0) {
        Py_DECREF(address);
        return NULL;
    }
    return address;
}

static PyObject *
sp_parse_address(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* parse_address(text, defects, header=None) */
    if (!ready(address_type && address_fallback && PARAMS_READY))
        return NULL;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "parse_address(text, defects, header=None)");
        return NULL;
    }
    return fast_or_fallback(args[0], build_address, address_fallback, args, nargs);
}

/* -- SIP URI ---------------------------------------------------------------------------- */

static PyObject *
build_sip_uri(PyObject *text, const char *s, Py_ssize_t n)
{
    /* (sips?+):(?:([^:@;?%\s<>"\x00]++)@)?([A-Za-z0-9._-]++)(?::([0-9]{1,5}+))?
     * (?:;(URI_PARAMS))? */
    Py_ssize_t i;
    PyObject *scheme;
    if (n >= 4 && memcmp(s, "sip:", 4) == 0) {
        i = 4;
        scheme = str_sip;
    }
    else if (n >= 5 && memcmp(s, "sips:", 5) == 0) {
        i = 5;
        scheme = str_sips;
    }
    else
        return NULL;
    Py_ssize_t u0 = -1, u1 = -1;
    Py_ssize_t j = run(s, i, n, C_USER);
    if (j > i && j < n && s[j] == '@') {
        u0 = i;
        u1 = j;
        i = j + 1;
    }
    Py_ssize_t h0, h1, pstart;
    long port;
    if (!hostport_params_to_end(s, i, n, C_UNAME, C_UVALUE, &h0, &h1, &port, &pstart))
        return NULL;
    PyObject *uri = new_instance(sipuri_type);
    if (uri == NULL)
        return NULL;
    if (set_slot_steal(sip_host, uri, ascii_slice(s, h0, h1)) < 0
        || set_slot_steal(sip_user, uri,
                          u0 < 0 ? (Py_INCREF(Py_None), Py_None) : ascii_slice(s, u0, u1)) < 0
        || set_slot(sip_password, uri, Py_None) < 0
        || set_slot_steal(sip_port, uri,
                          port == -2 ? (Py_INCREF(Py_None), Py_None) : PyLong_FromLong(port)) < 0
        || set_slot_steal(sip_params, uri, make_params(text, s, pstart, n)) < 0
        || set_slot(sip_headers, uri, empty_tuple) < 0
        || set_slot(sip_scheme, uri, scheme) < 0
        || set_slot(sip_text, uri, text) < 0) {
        Py_DECREF(uri);
        return NULL;
    }
    return uri;
}

static PyObject *
sp_parse_uri(PyObject *self, PyObject *text)
{
    if (!ready(sipuri_type && uri_fallback && PARAMS_READY))
        return NULL;
    return fast_or_fallback(text, build_sip_uri, uri_fallback, &text, 1);
}

/* -- CSeq -------------------------------------------------------------------------------- */

static PyObject *
build_cseq(PyObject *text, const char *s, Py_ssize_t n)
{
    /* number SP method: 1 to 9 digits, a non-empty token, nothing else. */
    Py_ssize_t d = run(s, 0, n, C_DIGIT);
    if (d == 0 || d > 9 || d >= n || s[d] != ' ')
        return NULL;
    Py_ssize_t m = run(s, d + 1, n, C_TOKEN);
    if (m == d + 1 || m != n)
        return NULL;
    long number = 0;
    for (Py_ssize_t k = 0; k < d; k++)
        number = number * 10 + (s[k] - '0');
    PyObject *cseq = new_instance(cseq_type);
    if (cseq == NULL)
        return NULL;
    if (set_slot_steal(cseq_number, cseq, PyLong_FromLong(number)) < 0
        || set_slot_steal(cseq_method, cseq, ascii_slice(s, d + 1, n)) < 0) {
        Py_DECREF(cseq);
        return NULL;
    }
    return cseq;
}

static PyObject *
sp_parse_cseq(PyObject *self, PyObject *text)
{
    if (!ready(cseq_type && cseq_fallback))
        return NULL;
    return fast_or_fallback(text, build_cseq, cseq_fallback, &text, 1);
}

/* -- header lines ---------------------------------------------------------------------- */

static int
is_lws(Py_UCS4 c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static PyObject *
sp_line_value(PyObject *self, PyObject *line)
{
    /* line[line.find(":") + 1:].strip(" \t\r\n"); a folded line (one with a
     * line feed after the colon) goes to the Python function. */
    if (!ready(line_value_fallback != NULL))
        return NULL;
    if (!PyUnicode_Check(line))
        return PyObject_Vectorcall(line_value_fallback, &line, 1, NULL);
    Py_ssize_t n = PyUnicode_GET_LENGTH(line);
    Py_ssize_t colon = PyUnicode_FindChar(line, ':', 0, n, 1);
    if (colon == -2)
        return NULL;
    Py_ssize_t i = colon + 1; /* -1 + 1: no colon, the whole line */
    if (PyUnicode_FindChar(line, '\n', i, n, 1) != -1)
        return PyObject_Vectorcall(line_value_fallback, &line, 1, NULL);
    int kind = PyUnicode_KIND(line);
    const void *data = PyUnicode_DATA(line);
    Py_ssize_t j = n;
    while (i < j && is_lws(PyUnicode_READ(kind, data, i)))
        i++;
    while (j > i && is_lws(PyUnicode_READ(kind, data, j - 1)))
        j--;
    return PyUnicode_Substring(line, i, j);
}

/* -- parameters ------------------------------------------------------------------------- */

static PyObject *
find_param(PyObject *text, PyObject *name)
{
    /* _find_param(text, name): the value of the first name parameter in
     * plain parameter text, None when it has no value, MISSING when absent. */
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), k = PyUnicode_GET_LENGTH(name);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t i = PyUnicode_Find(text, name, 0, n, 1);
    while (i >= 0) {
        if (i == 0 || PyUnicode_READ(kind, data, i - 1) == ';') {
            Py_ssize_t end = i + k;
            if (end < n && PyUnicode_READ(kind, data, end) == '=') {
                Py_ssize_t stop = PyUnicode_FindChar(text, ';', end, n, 1);
                if (stop == -2)
                    return NULL;
                return PyUnicode_Substring(text, end + 1, stop < 0 ? n : stop);
            }
            if (end >= n || PyUnicode_READ(kind, data, end) == ';')
                Py_RETURN_NONE;
        }
        /* str.find(name, i + 1): an empty name matches at i + 1 up to n. */
        i = (i + 1 > n) ? -1 : PyUnicode_Find(text, name, i + 1, n, 1);
    }
    if (i == -2)
        return NULL;
    Py_INCREF(missing);
    return missing;
}

static PyObject *
sp_find_param(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!ready(missing != NULL))
        return NULL;
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "find_param(text: str, name: str)");
        return NULL;
    }
    return find_param(args[0], args[1]);
}

static PyObject *
sp_get_param(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* get_param(params, name): params.get(name) for a lowercase name with
     * no ';' or '=', reading the text of a lazy Params directly. */
    if (!ready(missing && empty_params))
        return NULL;
    if (nargs != 2 || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "get_param(params, name: str)");
        return NULL;
    }
    PyObject *params = args[0], *name = args[1];
    PyObject *text = PyObject_GetAttr(params, str_text);
    if (text == NULL)
        return NULL;
    if (PyUnicode_Check(text)) {
        PyObject *found = find_param(text, name);
        Py_DECREF(text);
        if (found != missing)
            return found;
        Py_DECREF(found);
    }
    else {
        Py_DECREF(text);
        if (params == empty_params)
            Py_RETURN_NONE;
    }
    return PyObject_CallMethodOneArg(params, str_get, name);
}

/* -- framing -------------------------------------------------------------------------------- */

/* The framing fast path on data[start:]: 1 with *end, *lines and *keys set
 * (new references) and *cl_count the number of Content-Length lines; 0
 * when the Python code must decide; -1 on an error. See sp_frame. */
static int
frame_lines(PyObject *data, Py_ssize_t start, Py_ssize_t max_len, Py_ssize_t max_headers,
            PyObject *names, Py_ssize_t *end_out, PyObject **lines_out, PyObject **keys_out,
            Py_ssize_t *cl_count)
{
    const char *s = PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (start < 0 || start > n)
        return 0;
    /* Find the first CRLF CRLF and check every octet before it. */
    Py_ssize_t nlines = 1, end = -1;
    Py_ssize_t limit = (max_len < n - start) ? start + max_len : n;
    for (Py_ssize_t i = start; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r') {
            if (i + 1 >= n || s[i + 1] != '\n')
                return 0;
            if (i + 3 < n && s[i + 2] == '\r' && s[i + 3] == '\n') {
                end = i;
                break;
            }
            nlines++;
            i++; /* past the LF */
        }
        else if (c == '\n' || c >= 0x80)
            return 0;
        if (i >= limit)
            return 0; /* longer than max_header_length before its end */
    }
    if (end < 0 || end - start > max_len || nlines > max_headers)
        return 0;
    PyObject *lines = PyList_New(nlines);
    PyObject *keys = PyList_New(nlines);
    if (lines == NULL || keys == NULL)
        goto error;
    Py_ssize_t pos = start, cl = 0;
    for (Py_ssize_t k = 0; k < nlines; k++) {
        const char *crlf = (k + 1 < nlines) ? memchr(s + pos, '\r', (size_t)(end - pos)) : NULL;
        Py_ssize_t stop = crlf ? (Py_ssize_t)(crlf - s) : end;
        PyObject *line = ascii_slice(s, pos, stop);
        if (line == NULL)
            goto error;
        PyList_SET_ITEM(lines, k, line);
        PyObject *key;
        if (k == 0)
            key = str_start;
        else {
            const char *colon = memchr(s + pos, ':', (size_t)(stop - pos));
            Py_ssize_t name_end = colon ? (Py_ssize_t)(colon - s) : stop;
            PyObject *name = ascii_slice(s, pos, name_end);
            if (name == NULL)
                goto error;
            key = PyDict_GetItemWithError(names, name);
            Py_DECREF(name);
            if (key == NULL) {
                Py_DECREF(lines);
                Py_DECREF(keys);
                return PyErr_Occurred() ? -1 : 0;
            }
            if (key == str_content_length
                || (PyUnicode_Check(key) && PyUnicode_Compare(key, str_content_length) == 0))
                cl++;
        }
        Py_INCREF(key);
        PyList_SET_ITEM(keys, k, key);
        pos = stop + 2;
    }
    *end_out = end;
    *lines_out = lines;
    *keys_out = keys;
    *cl_count = cl;
    return 1;
error:
    Py_XDECREF(lines);
    Py_XDECREF(keys);
    return -1;
}

static PyObject *
sp_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* frame(data, start, max_header_length, max_headers, names)
     *     -> (end, lines, keys) | None
     *
     * The framing fast path of parse_message: the header section ends at
     * the first CRLF CRLF, at most max_header_length octets after start;
     * it is ASCII, every CR and LF in it is one CRLF, it has at most
     * max_headers lines, and every header line's name (as written, up to
     * the first colon) is a key of names. keys[0] is ":start". None when
     * any of that fails: parse_message's Python code then decides, as it
     * would without this module. */
    if (nargs != 5 || !PyBytes_Check(args[0]) || !PyDict_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "frame(data: bytes, start, max_header_length, max_headers, names: dict)");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    Py_ssize_t max_len = PyLong_AsSsize_t(args[2]);
    Py_ssize_t max_headers = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred())
        return NULL;
    Py_ssize_t end, cl;
    PyObject *lines, *keys;
    int rc = frame_lines(args[0], start, max_len, max_headers, args[4], &end, &lines, &keys, &cl);
    if (rc <= 0) {
        if (rc < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *end_obj = PyLong_FromSsize_t(end);
    PyObject *out = end_obj ? PyTuple_Pack(3, end_obj, lines, keys) : NULL;
    Py_XDECREF(end_obj);
    Py_DECREF(lines);
    Py_DECREF(keys);
    return out;
}

/* The message object for a plain SIP/2.0 start line s[0:n] (ASCII), with
 * its start-line slots set; NULL with no error set when unsure (the
 * Python code's _fast_start_line answers None there). */
static PyObject *
start_line(const char *s, Py_ssize_t n, Py_ssize_t max_uri_length)
{
    if (n >= 8 && memcmp(s, "SIP/2.0 ", 8) == 0) {
        /* code, _, reason = first[8:].partition(" ") */
        const char *sp = memchr(s + 8, ' ', (size_t)(n - 8));
        Py_ssize_t code_end = sp ? (Py_ssize_t)(sp - s) : n;
        if (code_end - 8 != 3 || !IS(s[8], C_DIGIT) || !IS(s[9], C_DIGIT)
            || !IS(s[10], C_DIGIT) || s[8] < '1' || s[8] > '6')
            return NULL;
        long code = (s[8] - '0') * 100 + (s[9] - '0') * 10 + (s[10] - '0');
        PyObject *msg = new_instance(response_type);
        if (msg == NULL)
            return NULL;
        if (set_slot_steal(rs_status, msg, PyLong_FromLong(code)) < 0
            || set_slot_steal(rs_reason, msg,
                              sp ? ascii_slice(s, code_end + 1, n) : ascii_slice(s, n, n)) < 0
            || set_slot(rs_version, msg, str_sip20) < 0) {
            Py_DECREF(msg);
            return NULL;
        }
        return msg;
    }
    /* method, _, rest = first.partition(" "); uri, _, version = rest.partition(" ") */
    const char *sp1 = memchr(s, ' ', (size_t)n);
    if (sp1 == NULL)
        return NULL;
    Py_ssize_t m_end = sp1 - s;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(n - m_end - 1));
    if (sp2 == NULL)
        return NULL;
    Py_ssize_t u0 = m_end + 1, u1 = sp2 - s;
    /* The version being exactly SIP/2.0 means there were exactly two spaces. */
    if (n - (u1 + 1) != 7 || memcmp(s + u1 + 1, "SIP/2.0", 7) != 0)
        return NULL;
    if (u1 == u0 || s[u0] == '<' || u1 - u0 > max_uri_length)
        return NULL;
    PyObject *method = ascii_slice(s, 0, m_end);
    if (method == NULL)
        return NULL;
    int known = PySet_Contains(methods_set, method);
    if (known <= 0) {
        Py_DECREF(method);
        return NULL; /* an error (known < 0) stays set */
    }
    PyObject *msg = new_instance(request_type);
    if (msg == NULL) {
        Py_DECREF(method);
        return NULL;
    }
    if (set_slot_steal(rq_method, msg, method) < 0
        || set_slot_steal(rq_uri_text, msg, ascii_slice(s, u0, u1)) < 0
        || set_slot(rq_version, msg, str_sip20) < 0) {
        Py_DECREF(msg);
        return NULL;
    }
    return msg;
}

static PyObject *
sp_parse_head(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* parse_head(data, start, max_header_length, max_headers, max_uri_length,
     *            names, defects) -> (msg, end, length) | None
     *
     * _parse_head_fast: framing as frame() does it, a plain SIP/2.0 start
     * line, and the message object with its header slots set (no body yet).
     * length is the Content-Length when it is the last line, there once,
     * of 1 to 9 digits; -1 leaves it to the Python code. */
    if (!ready(request_type && response_type && methods_set))
        return NULL;
    if (nargs != 7 || !PyBytes_Check(args[0]) || !PyDict_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "parse_head(data: bytes, start, max_header_length, "
                                         "max_headers, max_uri_length, names: dict, defects)");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    Py_ssize_t max_len = PyLong_AsSsize_t(args[2]);
    Py_ssize_t max_headers = PyLong_AsSsize_t(args[3]);
    Py_ssize_t max_uri = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred())
        return NULL;
    Py_ssize_t end, cl;
    PyObject *lines, *keys;
    int rc = frame_lines(args[0], start, max_len, max_headers, args[5], &end, &lines, &keys, &cl);
    if (rc <= 0) {
        if (rc < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    const char *s = PyBytes_AS_STRING(args[0]);
    PyObject *first = PyList_GET_ITEM(lines, 0);
    Py_ssize_t first_len = PyUnicode_GET_LENGTH(first);
    PyObject *msg = start_line(s + start, first_len, max_uri);
    if (msg == NULL) {
        Py_DECREF(lines);
        Py_DECREF(keys);
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *cache = PyDict_New();
    if (cache == NULL || set_slot(m_lines, msg, lines) < 0 || set_slot(m_keys, msg, keys) < 0
        || set_slot(m_eols, msg, Py_None) < 0 || set_slot(m_sep, msg, str_crlf2) < 0
        || set_slot(m_cache, msg, cache) < 0 || set_slot(m_defects, msg, args[6]) < 0) {
        Py_XDECREF(cache);
        Py_DECREF(lines);
        Py_DECREF(keys);
        Py_DECREF(msg);
        return NULL;
    }
    Py_DECREF(cache);
    long length = -1;
    Py_ssize_t nkeys = PyList_GET_SIZE(keys);
    PyObject *last_key = PyList_GET_ITEM(keys, nkeys - 1);
    if (cl == 1 && nkeys > 1
        && (last_key == str_content_length
            || (PyUnicode_Check(last_key) && PyUnicode_Compare(last_key, str_content_length) == 0))) {
        /* line[line.find(":") + 1:].strip(" \t\r\n"): 1 to 9 ASCII digits */
        PyObject *last = PyList_GET_ITEM(lines, nkeys - 1);
        const char *l = (const char *)PyUnicode_DATA(last);
        Py_ssize_t ln = PyUnicode_GET_LENGTH(last);
        const char *colon = memchr(l, ':', (size_t)ln);
        Py_ssize_t i = colon ? (colon - l) + 1 : 0, j = ln;
        while (i < j && (l[i] == ' ' || l[i] == '\t'))
            i++;
        while (j > i && (l[j - 1] == ' ' || l[j - 1] == '\t'))
            j--;
        if (j - i >= 1 && j - i <= 9 && run(l, i, j, C_DIGIT) == j) {
            length = 0;
            for (; i < j; i++)
                length = length * 10 + (l[i] - '0');
        }
    }
    Py_DECREF(lines);
    Py_DECREF(keys);
    PyObject *end_obj = PyLong_FromSsize_t(end);
    PyObject *len_obj = PyLong_FromLong(length);
    PyObject *out = (end_obj && len_obj) ? PyTuple_Pack(3, msg, end_obj, len_obj) : NULL;
    Py_XDECREF(end_obj);
    Py_XDECREF(len_obj);
    Py_DECREF(msg);
    return out;
}

/* -- list headers ---------------------------------------------------------------------------- */

static PyObject *
get_slot(PyObject *descr, PyObject *obj)
{
    return Py_TYPE(descr)->tp_descr_get(descr, obj, (PyObject *)Py_TYPE(obj));
}

static PyObject *
lazy_values(PyObject *key, PyObject *texts, PyObject *parse, int from_lines)
{
    /* _lazy_values(key, texts, parse, from_lines); consumes texts. */
    if (texts == NULL)
        return NULL;
    PyObject *values = new_instance(lazy_type);
    Py_ssize_t n = PyList_GET_SIZE(texts);
    PyObject *items = PyList_New(n);
    if (values == NULL || items == NULL) {
        Py_XDECREF(values);
        Py_XDECREF(items);
        Py_DECREF(texts);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(unparsed);
        PyList_SET_ITEM(items, i, unparsed);
    }
    int rc = (set_slot(lv_key, values, key) < 0 || set_slot(lv_texts, values, texts) < 0
              || set_slot(lv_parse, values, parse) < 0
              || set_slot(lv_from_lines, values, from_lines ? Py_True : Py_False) < 0
              || set_slot(lv_items, values, items) < 0);
    Py_DECREF(texts);
    Py_DECREF(items);
    if (rc) {
        Py_DECREF(values);
        return NULL;
    }
    return values;
}

static PyObject *
sp_list_values(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* list_values(msg, key, parse) -> LazyValues: Message._list. The lines
     * of header key, each holding one value to be cut out when read, when
     * none of them holds a comma; no lines, no values; any comma, the
     * Python function (which splits the list where its grammar allows). */
    if (!ready(lazy_type && unparsed && list_fallback && m_keys))
        return NULL;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "list_values(msg, key, parse)");
        return NULL;
    }
    PyObject *msg = args[0], *key = args[1], *parse = args[2];
    PyObject *keys = get_slot(m_keys, msg);
    if (keys == NULL)
        return NULL;
    PyObject *lines = get_slot(m_lines, msg);
    if (lines == NULL || !PyList_Check(keys) || !PyList_Check(lines)
        || PyList_GET_SIZE(keys) != PyList_GET_SIZE(lines)) {
        Py_DECREF(keys);
        Py_XDECREF(lines);
        if (PyErr_Occurred())
            return NULL;
        return PyObject_Vectorcall(list_fallback, args, nargs, NULL);
    }
    PyObject *picked = PyList_New(0);
    if (picked == NULL)
        goto error;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        int eq = PyObject_RichCompareBool(PyList_GET_ITEM(keys, i), key, Py_EQ);
        if (eq < 0)
            goto error;
        if (!eq)
            continue;
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!PyUnicode_Check(line))
            goto fallback;
        Py_ssize_t comma = PyUnicode_FindChar(line, ',', 0, PyUnicode_GET_LENGTH(line), 1);
        if (comma == -2)
            goto error;
        if (comma >= 0)
            goto fallback;
        if (PyList_Append(picked, line) < 0)
            goto error;
    }
    Py_DECREF(keys);
    Py_DECREF(lines);
    return lazy_values(key, picked, parse, PyList_GET_SIZE(picked) > 0);
fallback:
    Py_DECREF(keys);
    Py_DECREF(lines);
    Py_DECREF(picked);
    return PyObject_Vectorcall(list_fallback, args, nargs, NULL);
error:
    Py_DECREF(keys);
    Py_XDECREF(lines);
    Py_XDECREF(picked);
    return NULL;
}

/* -- Kamailio's core_hash ---------------------------------------------------------------------- */

static uint32_t
mix(uint32_t h, const signed char *p, Py_ssize_t n)
{
    /* src/core/hash_func.h: words of four chars (signed, as on x86-64),
     * big-endian, and the last 1-3 chars as one more word. Unsigned
     * arithmetic: the wrap-around C's int sum would have, without its
     * undefined behaviour. */
    const signed char *end = p + n;
    uint32_t v;
    for (; end - p >= 4; p += 4) {
        v = ((uint32_t)(int)p[0] << 24) + ((uint32_t)(int)p[1] << 16)
            + ((uint32_t)(int)p[2] << 8) + (uint32_t)(int)p[3];
        h += v ^ (v >> 3);
    }
    v = 0;
    for (; p < end; p++) {
        v <<= 8;
        v += (uint32_t)(int)*p;
    }
    return h + (v ^ (v >> 3));
}

static PyObject *
sp_core_hash(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"key1", "key2", "size", NULL};
    Py_buffer k1, k2 = {0};
    PyObject *key2 = Py_None;
    unsigned long long size = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|OK:core_hash", kwlist, &k1, &key2, &size))
        return NULL;
    uint32_t h = mix(0, (const signed char *)k1.buf, k1.len);
    PyBuffer_Release(&k1);
    if (key2 != Py_None) {
        if (PyObject_GetBuffer(key2, &k2, PyBUF_SIMPLE) < 0)
            return NULL;
        h = mix(h, (const signed char *)k2.buf, k2.len);
        PyBuffer_Release(&k2);
    }
    h = (h + (h >> 11)) + ((h >> 13) + (h >> 23));
    if (size)
        h &= (uint32_t)(size - 1);
    return PyLong_FromUnsignedLong(h);
}

/* -- configure -------------------------------------------------------------------------------- */

static int
take_type(PyObject *obj, PyTypeObject **slot)
{
    if (!PyType_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "configure: expected a class");
        return -1;
    }
    Py_INCREF(obj);
    Py_XSETREF(*slot, (PyTypeObject *)obj);
    return 0;
}

static int
take_descr(PyTypeObject *type, const char *name, PyObject **slot)
{
    /* The slot descriptor in the class's own __dict__ (or a base's). */
    PyObject *descr = NULL;
    PyObject *mro = type->tp_mro;
    for (Py_ssize_t i = 0; mro && i < PyTuple_GET_SIZE(mro) && descr == NULL; i++) {
        PyObject *dict = ((PyTypeObject *)PyTuple_GET_ITEM(mro, i))->tp_dict;
        if (dict != NULL)
            descr = PyDict_GetItemString(dict, name);
    }
    if (descr == NULL || Py_TYPE(descr)->tp_descr_set == NULL) {
        PyErr_Format(PyExc_TypeError, "configure: %s.%s is not a slot", type->tp_name, name);
        return -1;
    }
    Py_INCREF(descr);
    Py_XSETREF(*slot, descr);
    return 0;
}

static int
take(PyObject *obj, PyObject **slot)
{
    Py_INCREF(obj);
    Py_XSETREF(*slot, obj);
    return 0;
}

static int
take_callable(PyObject *obj, PyObject **slot)
{
    if (!PyCallable_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "configure: a fallback must be callable");
        return -1;
    }
    return take(obj, slot);
}

static PyObject *
sp_configure(PyObject *self, PyObject *args, PyObject *kwargs)
{
    /* configure(**parts): the classes the builders make and the Python
     * functions they fall back on, given by the modules that define them
     * as each is imported (Via=, Address=, SipURI=, Params=, CSeq=,
     * EMPTY_PARAMS=, MISSING=, via=, address=, uri=, cseq=, line_value=).
     * A function whose parts are not all given yet raises RuntimeError. */
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "configure takes keyword arguments only");
        return NULL;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (kwargs != NULL && PyDict_Next(kwargs, &pos, &key, &value)) {
        const char *k = PyUnicode_AsUTF8(key);
        if (k == NULL)
            return NULL;
        int rc = 0;
        if (strcmp(k, "Via") == 0) {
            rc = take_type(value, &via_type);
            if (rc == 0)
                rc = (take_descr(via_type, "transport", &via_transport) < 0
                      || take_descr(via_type, "host", &via_host) < 0
                      || take_descr(via_type, "port", &via_port) < 0
                      || take_descr(via_type, "params", &via_params) < 0
                      || take_descr(via_type, "protocol", &via_protocol) < 0) ? -1 : 0;
        }
        else if (strcmp(k, "Address") == 0) {
            rc = take_type(value, &address_type);
            if (rc == 0)
                rc = (take_descr(address_type, "_uri", &addr_uri) < 0
                      || take_descr(address_type, "display_name", &addr_display) < 0
                      || take_descr(address_type, "params", &addr_params) < 0) ? -1 : 0;
        }
        else if (strcmp(k, "SipURI") == 0) {
            rc = take_type(value, &sipuri_type);
            if (rc == 0)
                rc = (take_descr(sipuri_type, "host", &sip_host) < 0
                      || take_descr(sipuri_type, "user", &sip_user) < 0
                      || take_descr(sipuri_type, "password", &sip_password) < 0
                      || take_descr(sipuri_type, "port", &sip_port) < 0
                      || take_descr(sipuri_type, "params", &sip_params) < 0
                      || take_descr(sipuri_type, "headers", &sip_headers) < 0
                      || take_descr(sipuri_type, "scheme", &sip_scheme) < 0
                      || take_descr(sipuri_type, "_text", &sip_text) < 0) ? -1 : 0;
        }
        else if (strcmp(k, "Params") == 0) {
            rc = take_type(value, &params_type);
            if (rc == 0)
                rc = take_descr(params_type, "_text", &params_text_slot);
        }
        else if (strcmp(k, "CSeq") == 0) {
            rc = take_type(value, &cseq_type);
            if (rc == 0)
                rc = (take_descr(cseq_type, "number", &cseq_number) < 0
                      || take_descr(cseq_type, "method", &cseq_method) < 0) ? -1 : 0;
        }
        else if (strcmp(k, "Request") == 0) {
            rc = take_type(value, &request_type);
            if (rc == 0)
                rc = (take_descr(request_type, "_lines", &m_lines) < 0
                      || take_descr(request_type, "_keys", &m_keys) < 0
                      || take_descr(request_type, "_eols", &m_eols) < 0
                      || take_descr(request_type, "_sep", &m_sep) < 0
                      || take_descr(request_type, "_cache", &m_cache) < 0
                      || take_descr(request_type, "_defects", &m_defects) < 0
                      || take_descr(request_type, "method", &rq_method) < 0
                      || take_descr(request_type, "_uri_text", &rq_uri_text) < 0
                      || take_descr(request_type, "version", &rq_version) < 0) ? -1 : 0;
        }
        else if (strcmp(k, "Response") == 0) {
            rc = take_type(value, &response_type);
            if (rc == 0)
                rc = (take_descr(response_type, "status_code", &rs_status) < 0
                      || take_descr(response_type, "reason", &rs_reason) < 0
                      || take_descr(response_type, "version", &rs_version) < 0) ? -1 : 0;
        }
        else if (strcmp(k, "LazyValues") == 0) {
            rc = take_type(value, &lazy_type);
            if (rc == 0)
                rc = (take_descr(lazy_type, "_key", &lv_key) < 0
                      || take_descr(lazy_type, "_texts", &lv_texts) < 0
                      || take_descr(lazy_type, "_parse", &lv_parse) < 0
                      || take_descr(lazy_type, "_from_lines", &lv_from_lines) < 0
                      || take_descr(lazy_type, "_items", &lv_items) < 0) ? -1 : 0;
        }
        else if (strcmp(k, "UNPARSED") == 0)
            take(value, &unparsed);
        else if (strcmp(k, "METHODS") == 0) {
            if (!PyAnySet_Check(value)) {
                PyErr_SetString(PyExc_TypeError, "configure: METHODS must be a set");
                return NULL;
            }
            take(value, &methods_set);
        }
        else if (strcmp(k, "list") == 0)
            rc = take_callable(value, &list_fallback);
        else if (strcmp(k, "EMPTY_PARAMS") == 0)
            take(value, &empty_params);
        else if (strcmp(k, "MISSING") == 0)
            take(value, &missing);
        else if (strcmp(k, "via") == 0)
            rc = take_callable(value, &via_fallback);
        else if (strcmp(k, "address") == 0)
            rc = take_callable(value, &address_fallback);
        else if (strcmp(k, "uri") == 0)
            rc = take_callable(value, &uri_fallback);
        else if (strcmp(k, "cseq") == 0)
            rc = take_callable(value, &cseq_fallback);
        else if (strcmp(k, "line_value") == 0)
            rc = take_callable(value, &line_value_fallback);
        else {
            PyErr_Format(PyExc_TypeError, "configure: unknown part %s", k);
            return NULL;
        }
        if (rc < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* -- module ------------------------------------------------------------------------------------ */

PyDoc_STRVAR(core_hash_doc,
             "core_hash(key1, key2=None, size=0)\n--\n\n"
             "Kamailio's ``core_hash(s1, s2, size)``: unsigned 32-bit, masked with\n"
             "``size - 1`` when ``size`` (a power of two) is given.");

static PyMethodDef methods[] = {
    {"configure", (PyCFunction)(void (*)(void))sp_configure, METH_VARARGS | METH_KEYWORDS,
     "Give the builders their classes and fallbacks."},
    {"frame", (PyCFunction)(void (*)(void))sp_frame, METH_FASTCALL,
     "The framing fast path: (end, lines, keys) or None."},
    {"parse_head", (PyCFunction)(void (*)(void))sp_parse_head, METH_FASTCALL,
     "The header section's fast path: (msg, end, length) or None."},
    {"list_values", (PyCFunction)(void (*)(void))sp_list_values, METH_FASTCALL,
     "list_values(msg, key, parse) -> LazyValues"},
    {"parse_via", sp_parse_via, METH_O, "parse_via(text) -> Via"},
    {"parse_address", (PyCFunction)(void (*)(void))sp_parse_address, METH_FASTCALL,
     "parse_address(text, defects, header=None) -> Address"},
    {"parse_uri", sp_parse_uri, METH_O, "parse_uri(text) -> URI"},
    {"parse_cseq", sp_parse_cseq, METH_O, "parse_cseq(text) -> CSeq"},
    {"line_value", sp_line_value, METH_O, "A header line's value, unfolded, without LWS."},
    {"find_param", (PyCFunction)(void (*)(void))sp_find_param, METH_FASTCALL,
     "find_param(text, name) -> str | None | MISSING"},
    {"get_param", (PyCFunction)(void (*)(void))sp_get_param, METH_FASTCALL,
     "get_param(params, name) -> str | None"},
    {"core_hash", (PyCFunction)(void (*)(void))sp_core_hash, METH_VARARGS | METH_KEYWORDS,
     core_hash_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sipcore._speedups",
    .m_doc = "Compiled twins of the message layer's hot paths (optional).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    init_classes();
    str_crlf2 = PyUnicode_InternFromString("\r\n\r\n");
    str_content_length = PyUnicode_InternFromString("content-length");
    if (!str_crlf2 || !str_content_length)
        return NULL;
    str_sip20 = PyUnicode_InternFromString("SIP/2.0");
    str_sip = PyUnicode_InternFromString("sip");
    str_sips = PyUnicode_InternFromString("sips");
    str_start = PyUnicode_InternFromString(":start");
    str_text = PyUnicode_InternFromString("_text");
    str_get = PyUnicode_InternFromString("get");
    empty_tuple = PyTuple_New(0);
    if (!str_sip20 || !str_sip || !str_sips || !str_start || !str_text || !str_get || !empty_tuple)
        return NULL;
    return PyModule_Create(&module);
}
