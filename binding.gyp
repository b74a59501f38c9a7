{
  # CPU-only fallback build (used when cmake is missing). The source list comes from the same
  # script that CMakeLists.txt reads.
  "targets": [{
    "target_name": "scalpel",
    "sources": ["<!@(node scripts/native-sources.js cpu --gyp)"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
    "defines": ["NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
    "cflags!": ["-fno-exceptions"]
  }]
}
