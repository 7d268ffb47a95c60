/*
 * voxgate's libopus binding (the libopus vendored beside this file): mono decoders with in-band
 * FEC (opus_decode with decode_fec=1, RFC 6716 §2.1.7) and PLC of exactly one frame, and mono
 * encoders. Each handle is freed by destroy() when its session ends (a finalizer frees it
 * too, if nobody did); their size is reported to V8 as external memory meanwhile, so a thread
 * holding many collects them when it should.
 */
#include <node_api.h>
#include <opus.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define CHECK(call)                                                     \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      napi_throw_error(env, NULL, "voxgate-opus: N-API call failed");  \
      return NULL;                                                      \
    }                                                                   \
  } while (0)

/* What an external points at: the codec state, or NULL once destroyed. */
typedef struct {
  OpusDecoder* dec;
  OpusEncoder* enc;
  /* Bytes of codec state reported to V8 (napi_adjust_external_memory), so a thread that holds
     many handles collects their finalizers when it should, if anything was not destroyed. */
  int64_t bytes;
} Handle;

/* Live handles and their bytes in the whole process: every thread's (the codec threads and the
   media thread share this library), for live() and the gateway's metrics. */
static _Atomic int64_t live_handles = 0;
static _Atomic int64_t live_bytes = 0;

static void release(napi_env env, Handle* h) {
  if (h->dec) opus_decoder_destroy(h->dec);
  if (h->enc) opus_encoder_destroy(h->enc);
  h->dec = NULL;
  h->enc = NULL;
  if (h->bytes) {
    int64_t ignored;
    napi_adjust_external_memory(env, -h->bytes, &ignored);
    atomic_fetch_sub(&live_handles, 1);
    atomic_fetch_sub(&live_bytes, h->bytes);
  }
  h->bytes = 0;
}

static void finalize(napi_env env, void* data, void* hint) {
  (void)hint;
  release(env, (Handle*)data);
  free(data);
}

static napi_value wrap(napi_env env, OpusDecoder* dec, OpusEncoder* enc) {
  napi_value out;
  Handle* h = malloc(sizeof(Handle));
  if (!h) {
    if (dec) opus_decoder_destroy(dec);
    if (enc) opus_encoder_destroy(enc);
    napi_throw_error(env, NULL, "voxgate-opus: out of memory");
    return NULL;
  }
  h->dec = dec;
  h->enc = enc;
  h->bytes = (dec ? opus_decoder_get_size(1) : 0) + (enc ? opus_encoder_get_size(1) : 0);
  if (napi_create_external(env, h, finalize, NULL, &out) != napi_ok) {
    h->bytes = 0;
    release(env, h);
    free(h);
    napi_throw_error(env, NULL, "voxgate-opus: N-API call failed");
    return NULL;
  }
  int64_t ignored;
  napi_adjust_external_memory(env, h->bytes, &ignored);
  atomic_fetch_add(&live_handles, 1);
  atomic_fetch_add(&live_bytes, h->bytes);
  return out;
}

static Handle* handle(napi_env env, napi_value v) {
  Handle* h = NULL;
  if (napi_get_value_external(env, v, (void**)&h) != napi_ok || h == NULL) {
    napi_throw_type_error(env, NULL, "not an opus handle");
    return NULL;
  }
  return h;
}

/* createDecoder(rate) -> handle (mono). */
static napi_value create_decoder(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t rate;
  int err;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_int32(env, argv[0], &rate) != napi_ok) {
    napi_throw_type_error(env, NULL, "createDecoder(rate) needs a sample rate");
    return NULL;
  }
  OpusDecoder* dec = opus_decoder_create(rate, 1, &err);
  if (err != OPUS_OK || dec == NULL) {
    napi_throw_error(env, NULL, opus_strerror(err));
    return NULL;
  }
  return wrap(env, dec, NULL);
}

/* createEncoder(rate, bitrate, complexity) -> handle (mono, OPUS_APPLICATION_AUDIO, as voxgate encoded through @discordjs/opus). */
static napi_value create_encoder(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t rate, bitrate, complexity;
  int err;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || napi_get_value_int32(env, argv[0], &rate) != napi_ok || napi_get_value_int32(env, argv[1], &bitrate) != napi_ok ||
      napi_get_value_int32(env, argv[2], &complexity) != napi_ok) {
    napi_throw_type_error(env, NULL, "createEncoder(rate, bitrate, complexity)");
    return NULL;
  }
  OpusEncoder* enc = opus_encoder_create(rate, 1, OPUS_APPLICATION_AUDIO, &err);
  if (err != OPUS_OK || enc == NULL) {
    napi_throw_error(env, NULL, opus_strerror(err));
    return NULL;
  }
  if (opus_encoder_ctl(enc, OPUS_SET_BITRATE(bitrate)) != OPUS_OK || opus_encoder_ctl(enc, OPUS_SET_COMPLEXITY(complexity)) != OPUS_OK) {
    opus_encoder_destroy(enc);
    napi_throw_range_error(env, NULL, "voxgate-opus: bitrate or complexity refused by libopus");
    return NULL;
  }
  return wrap(env, NULL, enc);
}

/*
 * decode(decoder, payload | null, fec, out: Int16Array) -> samples written.
 * payload null: PLC for out.length samples. fec true: the frame *before* payload, from its
 * in-band FEC data (PLC when the packet carries none).
 */
static napi_value decode(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  void* data = NULL;
  size_t len = 0;
  bool fec = false;
  napi_valuetype type;
  napi_typedarray_type arrayType;
  size_t outLen;
  void* outData;
  napi_value result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "decode(decoder, payload, fec, out)");
    return NULL;
  }
  Handle* h = handle(env, argv[0]);
  if (!h) return NULL;
  if (!h->dec) {
    napi_throw_error(env, NULL, "voxgate-opus: the decoder was destroyed");
    return NULL;
  }
  CHECK(napi_typeof(env, argv[1], &type));
  if (type != napi_null && type != napi_undefined) CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  CHECK(napi_get_value_bool(env, argv[2], &fec));
  CHECK(napi_get_typedarray_info(env, argv[3], &arrayType, &outLen, &outData, NULL, NULL));
  if (arrayType != napi_int16_array) {
    napi_throw_type_error(env, NULL, "out must be an Int16Array");
    return NULL;
  }
  int n = opus_decode(h->dec, len ? (const unsigned char*)data : NULL, (opus_int32)len, (opus_int16*)outData, (int)outLen, fec ? 1 : 0);
  if (n < 0) {
    napi_throw_error(env, NULL, opus_strerror(n));
    return NULL;
  }
  CHECK(napi_create_int32(env, n, &result));
  return result;
}

/* encode(encoder, pcm: Int16Array of one frame) -> Buffer (the packet). */
static napi_value encode(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_typedarray_type arrayType;
  size_t frame;
  void* pcm;
  /* RFC 6716 §3.4 R5: at most 1275 bytes of frame data per packet. */
  unsigned char packet[1276];
  napi_value out;
  void* copy;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "encode(encoder, pcm)");
    return NULL;
  }
  Handle* h = handle(env, argv[0]);
  if (!h) return NULL;
  if (!h->enc) {
    napi_throw_error(env, NULL, "voxgate-opus: the encoder was destroyed");
    return NULL;
  }
  CHECK(napi_get_typedarray_info(env, argv[1], &arrayType, &frame, &pcm, NULL, NULL));
  if (arrayType != napi_int16_array) {
    napi_throw_type_error(env, NULL, "pcm must be an Int16Array");
    return NULL;
  }
  opus_int32 n = opus_encode(h->enc, (const opus_int16*)pcm, (int)frame, packet, (opus_int32)sizeof(packet));
  if (n < 0) {
    napi_throw_error(env, NULL, opus_strerror(n));
    return NULL;
  }
  CHECK(napi_create_buffer_copy(env, (size_t)n, packet, &copy, &out));
  return out;
}

/*
 * ctl(encoder, request, value): an OPUS_SET_* request of one integer (bitrate, complexity,
 * in-band FEC, packet loss, signal, bandwidth, DTX, ...). The GET requests (odd numbers) and
 * OPUS_RESET_STATE are refused: they take a pointer or nothing.
 */
static napi_value ctl(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t request, value;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || napi_get_value_int32(env, argv[1], &request) != napi_ok || napi_get_value_int32(env, argv[2], &value) != napi_ok) {
    napi_throw_type_error(env, NULL, "ctl(encoder, request, value)");
    return NULL;
  }
  Handle* h = handle(env, argv[0]);
  if (!h) return NULL;
  if (!h->enc) {
    napi_throw_error(env, NULL, "voxgate-opus: ctl needs a live encoder");
    return NULL;
  }
  if (request < 4000 || request > 4046 || request % 2 != 0 || request == OPUS_RESET_STATE) {
    napi_throw_range_error(env, NULL, "voxgate-opus: only OPUS_SET_* requests of one integer");
    return NULL;
  }
  int err = opus_encoder_ctl(h->enc, request, (opus_int32)value);
  if (err != OPUS_OK) {
    napi_throw_error(env, NULL, opus_strerror(err));
    return NULL;
  }
  return NULL;
}

/* destroy(handle): frees the codec state now (idempotent; a destroyed handle refuses to work). */
static napi_value destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "destroy(handle)");
    return NULL;
  }
  Handle* h = handle(env, argv[0]);
  if (!h) return NULL;
  release(env, h);
  return NULL;
}

/* live() -> [handles, bytes]: codec state not yet freed, in every thread of the process. */
static napi_value live(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out, handles, bytes;
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_create_double(env, (double)atomic_load(&live_handles), &handles));
  CHECK(napi_create_double(env, (double)atomic_load(&live_bytes), &bytes));
  CHECK(napi_set_element(env, out, 0, handles));
  CHECK(napi_set_element(env, out, 1, bytes));
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"createDecoder", NULL, create_decoder, NULL, NULL, NULL, napi_default, NULL},
      {"createEncoder", NULL, create_encoder, NULL, NULL, NULL, napi_default, NULL},
      {"decode", NULL, decode, NULL, NULL, NULL, napi_default, NULL},
      {"encode", NULL, encode, NULL, NULL, NULL, napi_default, NULL},
      {"ctl", NULL, ctl, NULL, NULL, NULL, napi_default, NULL},
      {"destroy", NULL, destroy, NULL, NULL, NULL, napi_default, NULL},
      {"live", NULL, live, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 7, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
