# :scheduler (the 1 ms timer probe) runs on its own, in a VM of its own
# with nothing else under way: `make test` runs `mix test --only scheduler`.
ExUnit.start(exclude: [:slow_external, :scheduler])
