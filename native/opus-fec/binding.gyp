{
  "targets": [
    {
      "target_name": "opus_fec",
      "sources": ["opus_fec.c"],
      "include_dirs": ["<!(node locate-opus.mjs include)"],
      "libraries": ["<!(node locate-opus.mjs lib)"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
