# libopus 1.3.1 (BSD-3-Clause, libopus/COPYING), built from the sources vendored here as a static
# library, and voxgate's binding to it. The libopus target, its source list and config/ are taken
# from @discordjs/opus 0.10.0's deps/ (MIT, (c) iCrawl, Mikko Rantanen): the same build voxgate
# used through that package, without its install script (node-pre-gyp, which tries a download).
{
  "variables": {
    "target_arch%": "x64"
  },
  "target_defaults": {
    "default_configuration": "Release",
    "configuration": {
      "Debug": {
        "defines": [
          "DEBUG",
          "_DEBUG"
        ],
        "msvs_settings": {
          "VSSLCompilerTool": {
            "RuntimeLibrary": 1
          }
        }
      },
      "Release": {
        "defines": [
          "NODEBUG"
        ],
        "msvs_settings": {
          "VSSLCompilerTool": {
            "RuntimeLibrary": 0
          }
        }
      }
    },
    "msvs_settings": {
      "VCLinkerTool": {
        "GenerateDebugInformation": "true"
      }
    }
  },
  "targets": [
    {
      "target_name": "libopus",
      "type": "static_library",
      "sources": [
        "libopus/src/opus_multistream.c",
        "libopus/src/opus_projection_encoder.c",
        "libopus/src/analysis.c",
        "libopus/src/mlp_data.c",
        "libopus/src/opus_multistream_encoder.c",
        "libopus/src/opus_projection_decoder.c",
        "libopus/src/mapping_matrix.c",
        "libopus/src/opus_compare.c",
        "libopus/src/mlp.c",
        "libopus/src/opus.c",
        "libopus/src/opus_multistream_decoder.c",
        "libopus/src/opus_decoder.c",
        "libopus/src/repacketizer.c",
        "libopus/src/opus_encoder.c",
        "libopus/silk/decode_frame.c",
        "libopus/silk/float/inner_product_FLP.c",
        "libopus/silk/float/scale_vector_FLP.c",
        "libopus/silk/float/find_pred_coefs_FLP.c",
        "libopus/silk/float/schur_FLP.c",
        "libopus/silk/float/warped_autocorrelation_FLP.c",
        "libopus/silk/float/burg_modified_FLP.c",
        "libopus/silk/float/find_LPC_FLP.c",
        "libopus/silk/float/LPC_inv_pred_gain_FLP.c",
        "libopus/silk/float/scale_copy_vector_FLP.c",
        "libopus/silk/float/noise_shape_analysis_FLP.c",
        "libopus/silk/float/pitch_analysis_core_FLP.c",
        "libopus/silk/float/bwexpander_FLP.c",
        "libopus/silk/float/LTP_analysis_filter_FLP.c",
        "libopus/silk/float/LTP_scale_ctrl_FLP.c",
        "libopus/silk/float/corrMatrix_FLP.c",
        "libopus/silk/float/encode_frame_FLP.c",
        "libopus/silk/float/sort_FLP.c",
        "libopus/silk/float/find_pitch_lags_FLP.c",
        "libopus/silk/float/residual_energy_FLP.c",
        "libopus/silk/float/LPC_analysis_filter_FLP.c",
        "libopus/silk/float/autocorrelation_FLP.c",
        "libopus/silk/float/k2a_FLP.c",
        "libopus/silk/float/regularize_correlations_FLP.c",
        "libopus/silk/float/find_LTP_FLP.c",
        "libopus/silk/float/energy_FLP.c",
        "libopus/silk/float/apply_sine_window_FLP.c",
        "libopus/silk/float/wrappers_FLP.c",
        "libopus/silk/float/process_gains_FLP.c",
        "libopus/silk/stereo_quant_pred.c",
        "libopus/silk/LPC_inv_pred_gain.c",
        "libopus/silk/process_NLSFs.c",
        "libopus/silk/NSQ.c",
        "libopus/silk/check_control_input.c",
        "libopus/silk/NLSF_del_dec_quant.c",
        "libopus/silk/LPC_analysis_filter.c",
        "libopus/silk/dec_API.c",
        "libopus/silk/resampler.c",
        "libopus/silk/sort.c",
        "libopus/silk/VAD.c",
        "libopus/silk/resampler_private_AR2.c",
        "libopus/silk/LPC_fit.c",
        "libopus/silk/control_SNR.c",
        "libopus/silk/decode_parameters.c",
        "libopus/silk/pitch_est_tables.c",
        "libopus/silk/fixed/warped_autocorrelation_FIX.c",
        "libopus/silk/fixed/apply_sine_window_FIX.c",
        "libopus/silk/fixed/residual_energy16_FIX.c",
        "libopus/silk/fixed/schur64_FIX.c",
        "libopus/silk/fixed/residual_energy_FIX.c",
        "libopus/silk/fixed/noise_shape_analysis_FIX.c",
        "libopus/silk/fixed/encode_frame_FIX.c",
        "libopus/silk/fixed/schur_FIX.c",
        "libopus/silk/fixed/autocorr_FIX.c",
        "libopus/silk/fixed/burg_modified_FIX.c",
        "libopus/silk/fixed/pitch_analysis_core_FIX.c",
        "libopus/silk/fixed/find_LTP_FIX.c",
        "libopus/silk/fixed/find_LPC_FIX.c",
        "libopus/silk/fixed/corrMatrix_FIX.c",
        "libopus/silk/fixed/k2a_FIX.c",
        "libopus/silk/fixed/LTP_scale_ctrl_FIX.c",
        "libopus/silk/fixed/process_gains_FIX.c",
        "libopus/silk/fixed/k2a_Q16_FIX.c",
        "libopus/silk/fixed/regularize_correlations_FIX.c",
        "libopus/silk/fixed/LTP_analysis_filter_FIX.c",
        "libopus/silk/fixed/vector_ops_FIX.c",
        "libopus/silk/fixed/find_pitch_lags_FIX.c",
        "libopus/silk/fixed/find_pred_coefs_FIX.c",
        "libopus/silk/control_audio_bandwidth.c",
        "libopus/silk/decoder_set_fs.c",
        "libopus/silk/NLSF_unpack.c",
        "libopus/silk/bwexpander.c",
        "libopus/silk/resampler_rom.c",
        "libopus/silk/shell_coder.c",
        "libopus/silk/decode_pulses.c",
        "libopus/silk/bwexpander_32.c",
        "libopus/silk/decode_core.c",
        "libopus/silk/PLC.c",
        "libopus/silk/tables_NLSF_CB_WB.c",
        "libopus/silk/table_LSF_cos.c",
        "libopus/silk/tables_pulses_per_block.c",
        "libopus/silk/tables_gain.c",
        "libopus/silk/inner_prod_aligned.c",
        "libopus/silk/resampler_down2_3.c",
        "libopus/silk/NSQ_del_dec.c",
        "libopus/silk/decode_pitch.c",
        "libopus/silk/NLSF_VQ_weights_laroia.c",
        "libopus/silk/interpolate.c",
        "libopus/silk/debug.c",
        "libopus/silk/tables_other.c",
        "libopus/silk/LP_variable_cutoff.c",
        "libopus/silk/NLSF_decode.c",
        "libopus/silk/encode_pulses.c",
        "libopus/silk/control_codec.c",
        "libopus/silk/stereo_LR_to_MS.c",
        "libopus/silk/HP_variable_cutoff.c",
        "libopus/silk/encode_indices.c",
        "libopus/silk/init_decoder.c",
        "libopus/silk/stereo_encode_pred.c",
        "libopus/silk/NLSF_VQ.c",
        "libopus/silk/init_encoder.c",
        "libopus/silk/resampler_private_IIR_FIR.c",
        "libopus/silk/resampler_private_up2_HQ.c",
        "libopus/silk/sigm_Q15.c",
        "libopus/silk/sum_sqr_shift.c",
        "libopus/silk/tables_LTP.c",
        "libopus/silk/resampler_down2.c",
        "libopus/silk/code_signs.c",
        "libopus/silk/tables_NLSF_CB_NB_MB.c",
        "libopus/silk/gain_quant.c",
        "libopus/silk/tables_pitch_lag.c",
        "libopus/silk/NLSF_stabilize.c",
        "libopus/silk/stereo_find_predictor.c",
        "libopus/silk/A2NLSF.c",
        "libopus/silk/NLSF2A.c",
        "libopus/silk/VQ_WMat_EC.c",
        "libopus/silk/NLSF_encode.c",
        "libopus/silk/log2lin.c",
        "libopus/silk/stereo_decode_pred.c",
        "libopus/silk/lin2log.c",
        "libopus/silk/CNG.c",
        "libopus/silk/enc_API.c",
        "libopus/silk/biquad_alt.c",
        "libopus/silk/quant_LTP_gains.c",
        "libopus/silk/resampler_private_down_FIR.c",
        "libopus/silk/ana_filt_bank_1.c",
        "libopus/silk/stereo_MS_to_LR.c",
        "libopus/silk/decode_indices.c",
        "libopus/celt/rate.c",
        "libopus/celt/entdec.c",
        "libopus/celt/modes.c",
        "libopus/celt/celt_lpc.c",
        "libopus/celt/laplace.c",
        "libopus/celt/cwrs.c",
        "libopus/celt/celt.c",
        "libopus/celt/entcode.c",
        "libopus/celt/celt_decoder.c",
        "libopus/celt/celt_encoder.c",
        "libopus/celt/mdct.c",
        "libopus/celt/quant_bands.c",
        "libopus/celt/vq.c",
        "libopus/celt/bands.c",
        "libopus/celt/kiss_fft.c",
        "libopus/celt/entenc.c",
        "libopus/celt/mathops.c",
        "libopus/celt/pitch.c"
      ],
      "cflags": [
        "-fvisibility=hidden",
        "-W",
        "-Wstrict-prototypes",
        "-Wall",
        "-Wextra",
        "-Wcast-align",
        "-Wnested-externs",
        "-Wshadow",
        "-Wno-parentheses",
        "-Wno-unused-parameter",
        "-Wno-sign-compare",
        "-Wno-maybe-uninitialized",
        "-Wno-incompatible-pointer-types",
        "-O2"
      ],
      "include_dirs": [
        "config/<(OS)/<(target_arch)",
        "libopus/include",
        "libopus/celt",
        "libopus/silk",
        "libopus/silk/float"
      ],
      "defines": [
        "PIC",
        "HAVE_CONFIG_H"
      ],
      "conditions": [
        [
          "target_arch==\"arm64\"",
          {
            "sources": [
              "libopus/celt/arm/arm_celt_map.c",
              "libopus/celt/arm/armcpu.c",
              "libopus/celt/arm/celt_neon_intr.c",
              "libopus/celt/arm/pitch_neon_intr.c",
              "libopus/silk/arm/LPC_inv_pred_gain_neon_intr.c"
            ],
            "include_dirs": [
              "opus"
            ]
          }
        ]
      ]
    },
    {
      "target_name": "voxgate_opus",
      "sources": [
        "voxgate_opus.c"
      ],
      "include_dirs": [
        "libopus/include"
      ],
      "dependencies": [
        "libopus"
      ],
      "cflags": [
        "-O2",
        "-Wall"
      ]
    }
  ]
}
