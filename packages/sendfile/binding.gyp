{
  "targets": [
    {
      "target_name": "sendfile",
      "sources": ["native/sendfile.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    }
  ]
}
