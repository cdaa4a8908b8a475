# The README's usage example, on ./data. Run it with `make demo`.

{:ok, _pid} = LiteStash.start_link(data_dir: "./data")

:ok = LiteStash.set("user:1001", %{name: "Alice", score: 99})
{:ok, user} = LiteStash.get("user:1001")

:ok = LiteStash.set("vec:1", [0.1, 0.5, 0.9])
{:ok, vector} = LiteStash.get("vec:1")

IO.puts("""
stored  "user:1001" => #{inspect(%{name: "Alice", score: 99})}
read    "user:1001" => #{inspect(user)}
stored  "vec:1"     => #{inspect([0.1, 0.5, 0.9])}
read    "vec:1"     => #{inspect(vector)}
""")

{:ok, count} = LiteStash.count()
data_dir = Path.expand("./data")
files = data_dir |> Path.join("*/*.db") |> Path.wildcard()

IO.puts("#{count} keys in #{length(files)} shard files under #{data_dir}:")

for file <- Enum.take(files, 3), do: IO.puts("  #{Path.relative_to(file, data_dir)}")
IO.puts("  ... (16 files, 4 tables each; key hash routes each key to one)")

:ok = LiteStash.stop()
