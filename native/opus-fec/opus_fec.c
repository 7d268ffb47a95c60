/*
 * A libopus decoder for voxgate with what @discordjs/opus does not expose: in-band FEC
 * (opus_decode with decode_fec=1, RFC 6716 §2.1.7) and PLC of exactly one frame.
 * Links the libopus that @discordjs/opus builds from its bundled sources.
 */
#include <node_api.h>
#include <opus.h>
#include <stdlib.h>

#define CHECK(call)                                                     \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      napi_throw_error(env, NULL, "opus-fec: N-API call failed");      \
      return NULL;                                                      \
    }                                                                   \
  } while (0)

static void finalize(napi_env env, void* data, void* hint) {
  (void)env;
  (void)hint;
  opus_decoder_destroy((OpusDecoder*)data);
}

/* create(rate) -> external decoder (mono). */
static napi_value create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t rate;
  int err;
  napi_value out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_int32(env, argv[0], &rate) != napi_ok) {
    napi_throw_type_error(env, NULL, "create(rate) needs a sample rate");
    return NULL;
  }
  OpusDecoder* dec = opus_decoder_create(rate, 1, &err);
  if (err != OPUS_OK || dec == NULL) {
    napi_throw_error(env, NULL, opus_strerror(err));
    return NULL;
  }
  CHECK(napi_create_external(env, dec, finalize, NULL, &out));
  return out;
}

/*
 * decode(decoder, payload | null, fec, out: Int16Array) -> samples written.
 * payload null: PLC for out.length samples. fec true: the frame *before* payload, from its
 * in-band FEC data (PLC when the packet carries none).
 */
static napi_value decode(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  OpusDecoder* dec;
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
  CHECK(napi_get_value_external(env, argv[0], (void**)&dec));
  CHECK(napi_typeof(env, argv[1], &type));
  if (type != napi_null && type != napi_undefined) CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  CHECK(napi_get_value_bool(env, argv[2], &fec));
  CHECK(napi_get_typedarray_info(env, argv[3], &arrayType, &outLen, &outData, NULL, NULL));
  if (arrayType != napi_int16_array) {
    napi_throw_type_error(env, NULL, "out must be an Int16Array");
    return NULL;
  }
  int n = opus_decode(dec, len ? (const unsigned char*)data : NULL, (opus_int32)len, (opus_int16*)outData, (int)outLen, fec ? 1 : 0);
  if (n < 0) {
    napi_throw_error(env, NULL, opus_strerror(n));
    return NULL;
  }
  CHECK(napi_create_int32(env, n, &result));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"create", NULL, create, NULL, NULL, NULL, napi_default, NULL},
      {"decode", NULL, decode, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
