/* Fused per-pixel kernels for segconvert (optional: segconvert.lut falls back to numpy).
 *
 * rgb_lookup: for each pixel of an RGB byte image, key = R | G << 8 | B << 16 (COCO
 * panoptic's id, or a colour), out = table[key] + offset (mod 256; offset 255 lets a
 * zero-filled table mean "unknown" = 255), hist[out] += 1 -- one pass over the
 * pixels instead of numpy's four (RGB -> RGBA, mask to 24 bits, take, histogram):
 * ~0.17 ms instead of ~1.0 ms for 640x480 (little-endian machines: the 64-bit loads
 * below read R, G, B as the low bytes).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *rgb_lookup(PyObject *self, PyObject *args) {
    Py_buffer rgb, table, out, hist;
    unsigned char offset = 0;
    if (!PyArg_ParseTuple(args, "y*y*w*w*|b", &rgb, &table, &out, &hist, &offset))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = out.len;
    if (rgb.len != 3 * n) {
        PyErr_SetString(PyExc_ValueError, "rgb must hold 3 bytes per output pixel");
    } else if (table.len != ((Py_ssize_t)1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "table must have 2**24 one-byte entries");
    } else if (n >= ((Py_ssize_t)1 << 34)) {  /* each 32-bit sub-histogram sees n/4 pixels */
        PyErr_SetString(PyExc_ValueError, "image too large for rgb_lookup");
    } else if (hist.len != 256 * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "hist must be 256 int64 counters");
    } else {
        const uint8_t *p = (const uint8_t *)rgb.buf;
        const uint8_t *t = (const uint8_t *)table.buf;
        uint8_t *o = (uint8_t *)out.buf;
        int64_t *h = (int64_t *)hist.buf;
        Py_BEGIN_ALLOW_THREADS
        /* Label maps are runs: a group of 8 pixels (24 bytes) equal to the previous group
         * has the previous group's codes, so it costs three compares and one 8-byte store;
         * the histogram gets a group's codes once per run, times the run's length. Measured
         * on make_dataset's panoptic PNGs: 0.17 ms instead of 0.30 per 640x480 image; on
         * noise (no runs at all) 0.37 instead of 0.25. Four sub-histograms break the
         * store-to-load chain when neighbouring codes are equal. */
        uint32_t part[4][256];
        memset(part, 0, sizeof(part));
        Py_ssize_t i = 0;
#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
        uint64_t pq0 = 0, pq1 = 0, pq2 = 0;
        uint32_t run = 0;
        uint8_t c[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (; i + 8 <= n; i += 8, p += 24) {
            uint64_t q0, q1, q2;
            memcpy(&q0, p, 8);
            memcpy(&q1, p + 8, 8);
            memcpy(&q2, p + 16, 8);
            if (run && q0 == pq0 && q1 == pq1 && q2 == pq2) {
                memcpy(o + i, c, 8);
                run++;
                continue;
            }
            for (int k = 0; k < 8; k++) part[k & 3][c[k]] += run;
            c[0] = (uint8_t)(t[q0 & 0xFFFFFF] + offset);
            c[1] = (uint8_t)(t[(q0 >> 24) & 0xFFFFFF] + offset);
            c[2] = (uint8_t)(t[(q0 >> 48) | ((q1 & 0xFF) << 16)] + offset);
            c[3] = (uint8_t)(t[(q1 >> 8) & 0xFFFFFF] + offset);
            c[4] = (uint8_t)(t[(q1 >> 32) & 0xFFFFFF] + offset);
            c[5] = (uint8_t)(t[(q1 >> 56) | ((q2 & 0xFFFF) << 8)] + offset);
            c[6] = (uint8_t)(t[(q2 >> 16) & 0xFFFFFF] + offset);
            c[7] = (uint8_t)(t[q2 >> 40] + offset);
            memcpy(o + i, c, 8);
            pq0 = q0; pq1 = q1; pq2 = q2;
            run = 1;
        }
        for (int k = 0; k < 8; k++) part[k & 3][c[k]] += run;
#endif
        for (; i < n; i++, p += 3) {
            uint8_t c = (uint8_t)(t[p[0] | p[1] << 8 | (uint32_t)p[2] << 16] + offset);
            o[i] = c;
            part[0][c]++;
        }
        for (int k = 0; k < 256; k++)
            h[k] += (int64_t)part[0][k] + part[1][k] + part[2][k] + part[3][k];
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

static PyMethodDef methods[] = {
    {"rgb_lookup", rgb_lookup, METH_VARARGS,
     "rgb_lookup(rgb, table, out, hist, offset=0): out[i] = table[R | G<<8 | B<<16] + offset (mod 256);"
     " hist[out[i]] += 1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
