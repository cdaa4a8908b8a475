ExUnit.start(exclude: [:slow_external])
