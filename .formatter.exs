# test/fixtures/ is left out on purpose: it holds byte-identical copies of
# the data contract's files.
[
  inputs: [
    "{mix,.formatter}.exs",
    "{config,lib,examples}/**/*.{ex,exs}",
    "test/*.{ex,exs}",
    "test/{support,litestash,mix,interop,reliability}/**/*.{ex,exs}"
  ],
  # The benchmark, a Mix project of its own.
  subdirectories: ["bench"]
]
