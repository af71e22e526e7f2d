/* Fused per-pixel kernels for segconvert (optional: segconvert.lut falls back to numpy).
 *
 * Both kernels read an RGB byte image, make key = R | G << 8 | B << 16 per pixel (COCO
 * panoptic's id, or a colour), write one code byte per pixel and count the codes -- one
 * pass over the pixels instead of numpy's four (RGB -> RGBA, mask to 24 bits, take,
 * histogram).
 *
 * rgb_lookup(rgb, table, out, hist, offset): code = table[key] + offset (mod 256), with
 *   a 2^24-entry table. For tables made once per run (a colormap: rgb reader).
 * rgb_codes(rgb, codes, out, hist, unknown): code = codes[key] for a dict {id: code},
 *   else `unknown`. For the few dozen ids of one image (COCO panoptic): the pairs go in
 *   a small hash table that stays in L1, where writing and clearing them in a 16 MB
 *   table cost a page fault per new page and a TLB miss per lookup; taking the dict
 *   itself saves the numpy calls that would turn it into arrays (0.03 ms per image).
 *
 * Label maps are runs, so both work run by run where they can (see RUN_KERNEL).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KEY_AT(p) ((uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 | (uint32_t)(p)[2] << 16)

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Two ways through a stretch [i0, i1) of pixels, both given LOOKUP(key) -> code:
 *
 * SCAN_STRETCH finds where each run of equal pixels ends (pixel j differs from pixel j-1
 * iff one of its bytes differs from the byte 3 before it: 16 bytes per SSE2 compare,
 * 8 without SSE2), then does one lookup, one memset and one histogram add per run.
 * Label maps are runs (make_dataset's panoptic PNGs: 54 pixels on average), so this
 * is the fast way: 0.12 ms per 640x480 image. Counts the runs into `runs`.
 *
 * GROUP_STRETCH takes 8 pixels (24 bytes) at a time: a group equal to the previous
 * group has its codes, else 8 lookups. 0.16 ms on the same images, but 0.6 ms instead
 * of the scan's 1.7 on noise (a run per pixel), so it takes over where runs are short.
 * Four sub-histograms break the store-to-load chain when neighbouring codes are equal;
 * the 64-bit loads read R, G, B as the low bytes on little-endian machines only
 * (elsewhere the scan does everything). */
#if defined(__SSE2__)
#define SCAN_STEP(found)                                                           \
    if (b + 16 <= nb) {                                                            \
        __m128i x_ = _mm_loadu_si128((const __m128i *)(p + b));                    \
        __m128i y_ = _mm_loadu_si128((const __m128i *)(p + b - 3));                \
        unsigned m_ = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x_, y_)) ^ 0xFFFFu; \
        if (m_ == 0) { b += 16; continue; }                                        \
        found = b + __builtin_ctz(m_);                                             \
        break;                                                                     \
    }
#else
#define SCAN_STEP(found)                                                           \
    if (b + 8 <= nb) {                                                             \
        uint64_t x_, y_;                                                           \
        memcpy(&x_, p + b, 8);                                                     \
        memcpy(&y_, p + b - 3, 8);                                                 \
        if (x_ == y_) { b += 8; continue; }                                        \
        while (p[b] == p[b - 3]) b++;                                              \
        found = b;                                                                 \
        break;                                                                     \
    }
#endif

#define SCAN_STRETCH(LOOKUP, i0, i1, runs)                                         \
    do {                                                                           \
        const Py_ssize_t nb = 3 * (i1);                                            \
        Py_ssize_t i = (i0);                                                       \
        while (i < (i1)) {                                                         \
            const uint8_t c0 = LOOKUP(KEY_AT(p + 3 * i));                          \
            Py_ssize_t b = 3 * i + 3, found = nb; /* first byte not known to repeat */ \
            for (;;) {                                                             \
                SCAN_STEP(found)                                                   \
                while (b < nb && p[b] == p[b - 3]) b++;                            \
                found = b;                                                         \
                break;                                                             \
            }                                                                      \
            Py_ssize_t j = found / 3;                                              \
            memset(o + i, c0, (size_t)(j - i));                                    \
            h[c0] += j - i;                                                        \
            i = j;                                                                 \
            (runs)++;                                                              \
        }                                                                          \
    } while (0)

#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
#define HAVE_GROUPS 1
#define GROUP_STRETCH(LOOKUP, i0, i1)                                              \
    do {                                                                           \
        const uint8_t *g = p + 3 * (i0);                                           \
        uint64_t pq0 = 0, pq1 = 0, pq2 = 0;                                        \
        uint32_t run = 0;                                                          \
        uint8_t c[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                   \
        Py_ssize_t i = (i0);                                                       \
        for (; i + 8 <= (i1); i += 8, g += 24) {                                   \
            uint64_t q0, q1, q2;                                                   \
            memcpy(&q0, g, 8);                                                     \
            memcpy(&q1, g + 8, 8);                                                 \
            memcpy(&q2, g + 16, 8);                                                \
            if (run && q0 == pq0 && q1 == pq1 && q2 == pq2) {                      \
                memcpy(o + i, c, 8);                                               \
                run++;                                                             \
                continue;                                                          \
            }                                                                      \
            for (int k = 0; k < 8; k++) part[k & 3][c[k]] += run;                  \
            c[0] = LOOKUP((uint32_t)(q0 & 0xFFFFFF));                              \
            c[1] = LOOKUP((uint32_t)((q0 >> 24) & 0xFFFFFF));                      \
            c[2] = LOOKUP((uint32_t)((q0 >> 48) | ((q1 & 0xFF) << 16)));           \
            c[3] = LOOKUP((uint32_t)((q1 >> 8) & 0xFFFFFF));                       \
            c[4] = LOOKUP((uint32_t)((q1 >> 32) & 0xFFFFFF));                      \
            c[5] = LOOKUP((uint32_t)((q1 >> 56) | ((q2 & 0xFFFF) << 8)));          \
            c[6] = LOOKUP((uint32_t)((q2 >> 16) & 0xFFFFFF));                      \
            c[7] = LOOKUP((uint32_t)(q2 >> 40));                                   \
            memcpy(o + i, c, 8);                                                   \
            pq0 = q0; pq1 = q1; pq2 = q2;                                          \
            run = 1;                                                               \
        }                                                                          \
        for (int k = 0; k < 8; k++) part[k & 3][c[k]] += run;                      \
        for (; i < (i1); i++, g += 3) {                                            \
            uint8_t c1 = LOOKUP(KEY_AT(g));                                        \
            o[i] = c1;                                                             \
            part[0][c1]++;                                                         \
        }                                                                          \
    } while (0)
#else
#define HAVE_GROUPS 0
#define GROUP_STRETCH(LOOKUP, i0, i1) do { } while (0)
#endif

/* The image in stretches of STRETCH pixels: the scan, unless the last scanned stretch
 * had runs shorter than SHORT_RUN pixels on average; then groups, with a scan again
 * every RETRY stretches to notice when runs come back. Worst case (noise) ~0.7 ms. */
#define STRETCH 4096
#define SHORT_RUN 8
#define RETRY 8
#define RUN_KERNEL(LOOKUP)                                                         \
    do {                                                                           \
        uint32_t part[4][256];                                                     \
        memset(part, 0, sizeof(part));                                             \
        int use_groups = 0, since_scan = 0;                                        \
        for (Py_ssize_t s0 = 0; s0 < n; s0 += STRETCH) {                           \
            Py_ssize_t s1 = s0 + STRETCH < n ? s0 + STRETCH : n;                   \
            if (HAVE_GROUPS && use_groups && ++since_scan < RETRY) {               \
                GROUP_STRETCH(LOOKUP, s0, s1);                                     \
                continue;                                                          \
            }                                                                      \
            Py_ssize_t runs = 0;                                                   \
            SCAN_STRETCH(LOOKUP, s0, s1, runs);                                    \
            use_groups = runs * SHORT_RUN > s1 - s0;                               \
            since_scan = 0;                                                        \
        }                                                                          \
        for (int k = 0; k < 256; k++)                                              \
            h[k] += (int64_t)part[0][k] + part[1][k] + part[2][k] + part[3][k];    \
    } while (0)

/* Checks shared by both kernels; sets a Python error and returns 0 when one fails. */
static int check_image(Py_buffer *rgb, Py_buffer *out, Py_buffer *hist) {
    if (rgb->len != 3 * out->len) {
        PyErr_SetString(PyExc_ValueError, "rgb must hold 3 bytes per output pixel");
        return 0;
    }
    if (out->len >= ((Py_ssize_t)1 << 34)) { /* each 32-bit sub-histogram sees n/4 pixels */
        PyErr_SetString(PyExc_ValueError, "image too large for one kernel call");
        return 0;
    }
    if (hist->len != 256 * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "hist must be 256 int64 counters");
        return 0;
    }
    return 1;
}

static PyObject *rgb_lookup(PyObject *self, PyObject *args) {
    Py_buffer rgb, table, out, hist;
    unsigned char offset = 0;
    if (!PyArg_ParseTuple(args, "y*y*w*w*|b", &rgb, &table, &out, &hist, &offset))
        return NULL;
    PyObject *result = NULL;
    if (!check_image(&rgb, &out, &hist)) {
        /* error set */
    } else if (table.len != ((Py_ssize_t)1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "table must have 2**24 one-byte entries");
    } else {
        const uint8_t *p = (const uint8_t *)rgb.buf;
        const uint8_t *t = (const uint8_t *)table.buf;
        uint8_t *o = (uint8_t *)out.buf;
        int64_t *h = (int64_t *)hist.buf;
        Py_ssize_t n = out.len;
        Py_BEGIN_ALLOW_THREADS
#define TABLE_LOOKUP(key) ((uint8_t)(t[(key)] + offset))
        RUN_KERNEL(TABLE_LOOKUP);
#undef TABLE_LOOKUP
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&rgb);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    PyBuffer_Release(&hist);
    return result;
}

/* Open addressing with linear probing; EMPTY is no 24-bit key. */
#define EMPTY 0xFFFFFFFFu

static inline uint8_t hash_find(const uint32_t *hk, const uint8_t *hv, uint32_t mask, int shift, uint32_t key,
                                uint8_t unknown) {
    uint32_t j = (uint32_t)(key * 0x9E3779B1u) >> shift;
    for (;;) {
        uint32_t k = hk[j];
        if (k == key) return hv[j];
        if (k == EMPTY) return unknown;
        j = (j + 1) & mask;
    }
}

static inline uint8_t cached_find(const uint32_t *hk, const uint8_t *hv, uint32_t mask, int shift, uint32_t key,
                                  uint8_t unknown, uint32_t *last_key, uint8_t *last_code) {
    if (key != *last_key) {
        *last_key = key;
        *last_code = hash_find(hk, hv, mask, shift, key, unknown);
    }
    return *last_code;
}

static PyObject *rgb_codes(PyObject *self, PyObject *args) {
    Py_buffer rgb, out, hist;
    PyObject *codes;
    unsigned char unknown = 255;
    if (!PyArg_ParseTuple(args, "y*O!w*w*|b", &rgb, &PyDict_Type, &codes, &out, &hist, &unknown))
        return NULL;
    PyObject *result = NULL;
    uint32_t *hk = NULL;
    Py_ssize_t m = PyDict_Size(codes);
    if (!check_image(&rgb, &out, &hist))
        goto done;
    int bits = 4; /* table size 2^bits >= 2m: at most half full, short probes */
    while (((Py_ssize_t)1 << bits) < 2 * m) bits++;
    if (bits > 26) {
        PyErr_SetString(PyExc_ValueError, "too many ids for one image");
        goto done;
    }
    uint32_t size = (uint32_t)1 << bits, mask = size - 1;
    int shift = 32 - bits;
    hk = (uint32_t *)malloc(size * (sizeof(uint32_t) + 1));
    if (hk == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    uint8_t *hv = (uint8_t *)(hk + size);
    memset(hk, 0xFF, size * sizeof(uint32_t));
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(codes, &pos, &k, &v)) {
        int overflow = 0;
        long long key = PyLong_AsLongLongAndOverflow(k, &overflow);
        if (key == -1 && PyErr_Occurred()) goto done;
        if (overflow || key < 0 || key > 0xFFFFFF) continue; /* not a 24-bit id: no pixel can have it */
        long code = PyLong_AsLong(v);
        if (code == -1 && PyErr_Occurred()) goto done;
        if (code < 0 || code > 255) {
            PyErr_SetString(PyExc_ValueError, "codes must be 0..255");
            goto done;
        }
        uint32_t s = (uint32_t)((uint32_t)key * 0x9E3779B1u) >> shift;
        while (hk[s] != EMPTY && hk[s] != (uint32_t)key) s = (s + 1) & mask;
        hk[s] = (uint32_t)key;
        hv[s] = (uint8_t)code;
    }
    {
        const uint8_t *p = (const uint8_t *)rgb.buf;
        uint8_t *o = (uint8_t *)out.buf;
        int64_t *h = (int64_t *)hist.buf;
        Py_ssize_t n = out.len;
        Py_BEGIN_ALLOW_THREADS
        /* neighbours mostly share an id: the last key found is tried first */
        uint32_t last_key = EMPTY;
        uint8_t last_code = unknown;
#define HASH_LOOKUP(key) cached_find(hk, hv, mask, shift, (key), unknown, &last_key, &last_code)
        RUN_KERNEL(HASH_LOOKUP);
#undef HASH_LOOKUP
        Py_END_ALLOW_THREADS
    }
    result = Py_None;
    Py_INCREF(result);
done:
    free(hk);
    PyBuffer_Release(&rgb);
    PyBuffer_Release(&out);
    PyBuffer_Release(&hist);
    return result;
}

/* The end of the run of byte p[i] in p[0..n): 8 bytes per compare (a word against the byte
 * repeated), where label maps have runs of tens of pixels. */
static inline Py_ssize_t byte_run_end(const uint8_t *p, Py_ssize_t i, Py_ssize_t n) {
    uint8_t v = p[i];
    uint64_t pattern = 0x0101010101010101ull * v;
    Py_ssize_t j = i + 1;
    while (j + 8 <= n) {
        uint64_t word;
        memcpy(&word, p + j, 8);
        uint64_t diff = word ^ pattern;
        if (diff) {
#if (defined(__GNUC__) || defined(__clang__)) && !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
            return j + (__builtin_ctzll(diff) >> 3); /* little-endian: the lowest differing byte */
#else
            while (p[j] == v)
                j++;
            return j;
#endif
        }
        j += 8;
    }
    while (j < n && p[j] == v)
        j++;
    return j;
}

/* code_boxes(codes, width, boxes): the bounding box of every code of a uint8 code map, in
 * one pass (writers need a box per segment: COCO's bbox). boxes is 256 x 4 int32, filled by
 * the caller with (width, height, -1, -1) and left with (min x, min y, max x, max y) of each
 * code that occurs. Run by run (byte_run_end): the updates once per run. */
static PyObject *code_boxes(PyObject *self, PyObject *args) {
    Py_buffer codes, boxes;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*nw*", &codes, &width, &boxes))
        return NULL;
    PyObject *result = NULL;
    if (width <= 0 || codes.len % width != 0) {
        PyErr_SetString(PyExc_ValueError, "codes must hold whole rows of `width` bytes");
    } else if (boxes.len != 256 * 4 * (Py_ssize_t)sizeof(int32_t)) {
        PyErr_SetString(PyExc_ValueError, "boxes must be 256 x 4 int32");
    } else if (width >= ((Py_ssize_t)1 << 31) || codes.len / width >= ((Py_ssize_t)1 << 31)) {
        PyErr_SetString(PyExc_ValueError, "image too large for int32 boxes");
    } else {
        const uint8_t *c = (const uint8_t *)codes.buf;
        int32_t *b = (int32_t *)boxes.buf;
        Py_ssize_t rows = codes.len / width;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t y = 0; y < rows; y++) {
            const uint8_t *row = c + y * width;
            Py_ssize_t x = 0;
            while (x < width) {
                uint8_t v = row[x];
                Py_ssize_t end = byte_run_end(row, x, width);
                int32_t *box = b + 4 * v;
                if (x < box[0]) box[0] = (int32_t)x;
                if (end - 1 > box[2]) box[2] = (int32_t)(end - 1);
                if (box[3] != (int32_t)y) { /* first run of v in this row */
                    if (box[3] < 0) box[1] = (int32_t)y;
                    box[3] = (int32_t)y;
                }
                x = end;
            }
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&codes);
    PyBuffer_Release(&boxes);
    return result;
}

/* u8_histogram(values, hist): hist[v] += 1 for every byte of values, run by run (byte_run_end):
 * one add per run, ~0.1 ms for 640x480 where cv2.calcHist takes 0.35. */
static PyObject *u8_histogram(PyObject *self, PyObject *args) {
    Py_buffer values, hist;
    if (!PyArg_ParseTuple(args, "y*w*", &values, &hist))
        return NULL;
    PyObject *result = NULL;
    if (hist.len != 256 * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "hist must be 256 int64 counters");
    } else {
        const uint8_t *p = (const uint8_t *)values.buf;
        int64_t *h = (int64_t *)hist.buf;
        Py_ssize_t n = values.len, i = 0;
        Py_BEGIN_ALLOW_THREADS
        while (i < n) {
            Py_ssize_t j = byte_run_end(p, i, n);
            h[p[i]] += j - i;
            i = j;
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&values);
    PyBuffer_Release(&hist);
    return result;
}

/* code_colors(codes, table, out): out pixel i = table[codes[i]] (3 bytes each; table: 256 x 3),
 * one overlapping 4-byte store per pixel: writers turn a uint8 code map into COCO panoptic ids or
 * colour masks with it in ~0.2 ms for 640x480, where cvtColor + a 3-channel cv2.LUT cost ~0.7. */
static PyObject *code_colors(PyObject *self, PyObject *args) {
    Py_buffer codes, table, out;
    if (!PyArg_ParseTuple(args, "y*y*w*", &codes, &table, &out))
        return NULL;
    PyObject *result = NULL;
    if (table.len != 256 * 3) {
        PyErr_SetString(PyExc_ValueError, "table must be 256 x 3 bytes");
    } else if (out.len != 3 * codes.len) {
        PyErr_SetString(PyExc_ValueError, "out must hold 3 bytes per code");
    } else {
        const uint8_t *c = (const uint8_t *)codes.buf;
        const uint8_t *t = (const uint8_t *)table.buf;
        uint8_t *o = (uint8_t *)out.buf;
        Py_ssize_t n = codes.len;
        uint32_t t4[256]; /* each colour as 4 bytes: one overlapping 4-byte store per pixel */
        for (int k = 0; k < 256; k++)
            t4[k] = (uint32_t)t[3 * k] | (uint32_t)t[3 * k + 1] << 8 | (uint32_t)t[3 * k + 2] << 16;
        Py_BEGIN_ALLOW_THREADS
        Py_ssize_t i = 0;
        for (; i + 1 < n; i++) { /* the 4th byte is overwritten by the next pixel */
            uint32_t rgb = t4[c[i]];
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            o[3 * i] = (uint8_t)rgb; o[3 * i + 1] = (uint8_t)(rgb >> 8); o[3 * i + 2] = (uint8_t)(rgb >> 16);
#else
            memcpy(o + 3 * i, &rgb, 4);
#endif
        }
        if (i < n) { /* the last pixel: exactly 3 bytes */
            const uint8_t *rgb = t + 3 * c[i];
            o[3 * i] = rgb[0]; o[3 * i + 1] = rgb[1]; o[3 * i + 2] = rgb[2];
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&codes);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    return result;
}

/* u8_lookup(values, table, out): out[i] = table[values[i]] (table: 256 bytes), run by run with
 * memset: ~0.05 ms for a 640x480 label map, and no OpenCV import (cv2.LUT's only use in a
 * writer's process would cost ~15 MB of RSS and its start-up). */
static PyObject *u8_lookup(PyObject *self, PyObject *args) {
    Py_buffer values, table, out;
    if (!PyArg_ParseTuple(args, "y*y*w*", &values, &table, &out))
        return NULL;
    PyObject *result = NULL;
    if (table.len != 256) {
        PyErr_SetString(PyExc_ValueError, "table must be 256 bytes");
    } else if (out.len != values.len) {
        PyErr_SetString(PyExc_ValueError, "out must be as long as values");
    } else {
        const uint8_t *p = (const uint8_t *)values.buf;
        const uint8_t *t = (const uint8_t *)table.buf;
        uint8_t *o = (uint8_t *)out.buf;
        Py_ssize_t n = values.len, i = 0;
        Py_BEGIN_ALLOW_THREADS
        while (i < n) {
            Py_ssize_t j = byte_run_end(p, i, n);
            memset(o + i, t[p[i]], (size_t)(j - i));
            i = j;
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&values);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    return result;
}

/* code_colors_boxes(codes, width, table, out, boxes): code_colors and code_boxes in one pass, run
 * by run (COCO panoptic's writer needs both of every image), the colours written 16 pixels at a time:
 * ~0.1 ms for 640x480 where the two passes take ~0.21. Same arguments and results as the two. */
static PyObject *code_colors_boxes(PyObject *self, PyObject *args) {
    Py_buffer codes, table, out, boxes;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*ny*w*w*", &codes, &width, &table, &out, &boxes))
        return NULL;
    PyObject *result = NULL;
    if (width <= 0 || codes.len % width != 0) {
        PyErr_SetString(PyExc_ValueError, "codes must hold whole rows of `width` bytes");
    } else if (table.len != 256 * 3) {
        PyErr_SetString(PyExc_ValueError, "table must be 256 x 3 bytes");
    } else if (out.len != 3 * codes.len) {
        PyErr_SetString(PyExc_ValueError, "out must hold 3 bytes per code");
    } else if (boxes.len != 256 * 4 * (Py_ssize_t)sizeof(int32_t)) {
        PyErr_SetString(PyExc_ValueError, "boxes must be 256 x 4 int32");
    } else if (width >= ((Py_ssize_t)1 << 31) || codes.len / width >= ((Py_ssize_t)1 << 31)) {
        PyErr_SetString(PyExc_ValueError, "image too large for int32 boxes");
    } else {
        const uint8_t *c = (const uint8_t *)codes.buf;
        const uint8_t *t = (const uint8_t *)table.buf;
        uint8_t *o = (uint8_t *)out.buf;
        int32_t *b = (int32_t *)boxes.buf;
        Py_ssize_t rows = codes.len / width, n = codes.len;
        uint8_t patterns[256 * 48]; /* each code's colour repeated 16 times */
        for (int k = 0; k < 256; k++)
            for (int j = 0; j < 16; j++)
                memcpy(patterns + 48 * k + 3 * j, t + 3 * k, 3);
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t y = 0; y < rows; y++) {
            const uint8_t *row = c + y * width;
            uint8_t *orow = o + 3 * y * width;
            Py_ssize_t x = 0;
            while (x < width) {
                uint8_t v = row[x];
                Py_ssize_t end = byte_run_end(row, x, width);
                int32_t *box = b + 4 * v;
                if (x < box[0]) box[0] = (int32_t)x;
                if (end - 1 > box[2]) box[2] = (int32_t)(end - 1);
                if (box[3] != (int32_t)y) { /* first run of v in this row */
                    if (box[3] < 0) box[1] = (int32_t)y;
                    box[3] = (int32_t)y;
                }
                /* the run's colour, 16 pixels per 48-byte copy of its pattern; a copy may run past
                 * the run into pixels that later runs overwrite, never past the image */
                const uint8_t *pattern = patterns + 48 * v;
                Py_ssize_t i = x;
                for (; i < end && y * width + i + 16 <= n; i += 16)
                    memcpy(orow + 3 * i, pattern, 48);
                for (; i < end; i++)
                    memcpy(orow + 3 * i, pattern, 3);
                x = end;
            }
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&codes);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    PyBuffer_Release(&boxes);
    return result;
}

static PyMethodDef methods[] = {
    {"rgb_lookup", rgb_lookup, METH_VARARGS,
     "rgb_lookup(rgb, table, out, hist, offset=0): out[i] = table[R | G<<8 | B<<16] + offset (mod 256);"
     " hist[out[i]] += 1."},
    {"rgb_codes", rgb_codes, METH_VARARGS,
     "rgb_codes(rgb, codes, out, hist, unknown=255): out[i] = codes.get(R | G<<8 | B<<16, unknown);"
     " hist[out[i]] += 1. codes: dict of int id -> int code 0..255; ids outside 24 bits never match."},
    {"u8_lookup", u8_lookup, METH_VARARGS,
     "u8_lookup(values, table, out): out[i] = table[values[i]] (table: 256 bytes)."},
    {"code_colors", code_colors, METH_VARARGS,
     "code_colors(codes, table, out): 3 bytes table[3 * code] per code into out (table: 256 x 3 bytes)."},
    {"u8_histogram", u8_histogram, METH_VARARGS,
     "u8_histogram(values, hist): hist[v] += 1 for every byte v of values (hist: 256 int64)."},
    {"code_colors_boxes", code_colors_boxes, METH_VARARGS,
     "code_colors_boxes(codes, width, table, out, boxes): code_colors and code_boxes in one pass."},
    {"code_boxes", code_boxes, METH_VARARGS,
     "code_boxes(codes, width, boxes): (min x, min y, max x, max y) of every code of a uint8 code map"
     " into boxes (256 x 4 int32, filled with (width, height, -1, -1) by the caller)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
