# test/fixtures/ is left out on purpose: it holds byte-identical copies of
# the data contract's files.
[
  inputs: [
    "{mix,.formatter}.exs",
    "{config,lib,bench,examples}/**/*.{ex,exs}",
    "test/*.{ex,exs}",
    "test/{support,litestash,mix,interop,reliability}/**/*.{ex,exs}"
  ]
]
