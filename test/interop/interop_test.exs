defmodule LiteStash.InteropTest do
  # LiteStash against test/interop/contract.py, a second implementation of
  # the data contract written in Python from CONTRACT.md alone: it verifies
  # what we write, writes what we read, and writes beside us at the same time.
  #
  # The Python is the virtualenv that `make test` creates under _build (with
  # msgpack), found through LITESTASH_INTEROP_PYTHON or at its default path.
  # Without it these tests fail and say how to get it: a silent skip would let
  # the compatibility check go missing, and a test that installs packages
  # from the network would be a surprise.
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers
  alias LiteStash.Test.TaggedJSON

  @moduletag :interop
  @moduletag :tmp_dir
  @moduletag timeout: 120_000

  @root Path.expand("../..", __DIR__)
  @contract_py Path.join(@root, "test/interop/contract.py")
  @default_python Path.join(@root, "_build/interop-venv/bin/python")

  # Run with python3's own sqlite3 on a data dir: every shard file's
  # integrity_check, and for each key prefix ("py", "ls") the span of its
  # commit times and how many of its rows were committed inside the other
  # prefix's span.
  @shard_report """
  import pathlib, sqlite3, sys
  times = {}
  for path in sorted(pathlib.Path(sys.argv[1]).glob("*/*.db")):
      conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
      check = "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
      print(f"integrity {path.name}: {check}")
      tables = [row[0] for row in conn.execute(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'tables_%'")]
      for table in tables:
          for key, sec, usec in conn.execute(f'SELECT key, timestamp, microsecond FROM "{table}"'):
              times.setdefault(key.split(":")[0], []).append(sec * 1_000_000 + usec)
      conn.close()
  for side, mine in sorted(times.items()):
      others = [t for other, ts in times.items() if other != side for t in ts]
      lo, hi = (min(others), max(others)) if others else (0, -1)
      inside = sum(1 for t in mine if lo <= t <= hi)
      print(f"side {side}: {len(mine)} rows, {inside} inside the other side's span")
  """

  setup_all do
    python = System.get_env("LITESTASH_INTEROP_PYTHON") || @default_python

    with true <- File.exists?(python),
         {_, 0} <- System.cmd(python, ["-c", "import msgpack"], stderr_to_stdout: true) do
      {:ok, python: python}
    else
      _ ->
        raise """
        the interop tests need a Python with the msgpack package, and none is at
        #{python} (set LITESTASH_INTEROP_PYTHON, or use the default _build/interop-venv).
        Run `make test`, or `make interop-venv` to create only the virtualenv, then mix test again.
        """
    end
  end

  describe "LiteStash writes, contract.py verifies" do
    test "every value type, unicode keys of 1..1024 bytes and 10,000 bulk keys verify exactly",
         %{tmp_dir: tmp, python: python} do
      data = Path.join(tmp, "data")
      s = start_store!(data)
      cases = value_cases()
      for {key, written, _stored} <- cases, do: :ok = LiteStash.set(s, key, written)
      unicode = Enum.map(unicode_keys(), &{&1, byte_size(&1)})
      :ok = LiteStash.mset(s, unicode)
      bulk = Enum.map(0..9_999, &{"bulk:#{&1}", bulk_value(&1)})
      :ok = LiteStash.mset(s, bulk)
      :ok = LiteStash.stop(s)

      expected =
        Enum.map(cases, fn {key, _written, stored} -> {key, stored} end) ++ unicode ++ bulk

      assert length(expected) > 11_000
      expected_json = write!(tmp, "expected.json", TaggedJSON.encode!(expected))

      {out, status} = contract(python, ["verify", data, expected_json, "--exact"])
      assert status == 0, tail(out)
      assert out =~ "verify: #{length(expected)} keys checked, 0 problems"

      # The structure-only check that the README offers users: no expected values.
      empty_json = write!(tmp, "empty.json", "{}")
      {out, status} = contract(python, ["verify", data, empty_json])
      assert status == 0, tail(out)
      assert out =~ "verify: #{length(expected)} keys checked, 0 problems"

      # Negative control: the same dir against expected data that differs.
      wrong =
        expected
        |> List.keyreplace("int:1", 0, {"int:1", 2})
        |> List.keyreplace("float:1.0", 0, {"float:1.0", 1})
        |> List.keyreplace("bin:ff00fe", 0, {"bin:ff00fe", <<255, 0>>})
        |> List.keydelete("str:hello", 0)
        |> Kernel.++([{"never written", true}])

      wrong_json = write!(tmp, "wrong.json", TaggedJSON.encode!(wrong))
      {out, status} = contract(python, ["verify", data, wrong_json, "--exact"])
      assert status == 1, tail(out)
      assert out =~ ~s(expected key "int:1": value differs: expected 2, found 1)
      assert out =~ ~s(expected key "float:1.0": value differs: expected 1, found 1.0)
      assert out =~ ~s(expected key "bin:ff00fe": value differs)
      assert out =~ ~s|key "str:hello": not expected (--exact)|
      assert out =~ ~s(expected key "never written": missing from the data dir)
      assert out =~ "verify: #{length(expected)} keys checked, 5 problems"
    end
  end

  describe "contract.py writes, LiteStash reads" do
    test "every value type and unicode key reads back exactly", %{tmp_dir: tmp, python: python} do
      data = Path.join(tmp, "data")

      pairs =
        Enum.map(value_cases(), fn {key, _written, stored} -> {key, stored} end) ++
          Enum.map(unicode_keys(), &{&1, byte_size(&1)}) ++
          [
            {"float:nan", :nan},
            {"float:inf", :infinity},
            {"float:-inf", :neg_infinity},
            {"list:specials", [:nan, :infinity, :neg_infinity, 0.5]},
            {"map:special values", %{"nan" => :nan, 1 => :neg_infinity}}
          ]

      data_json = write!(tmp, "data.json", TaggedJSON.encode!(pairs))
      {out, status} = contract(python, ["write", data, data_json])
      assert status == 0, tail(out)

      # bin that is valid UTF-8, which Elixir can't tell from str: both read as a binary.
      raw_json =
        write!(tmp, "raw.json", ~s({"bin:utf8": {"bin": "YWJj"}, "bin:empty": {"bin": ""}}))

      {out, status} = contract(python, ["write", data, raw_json])
      assert status == 0, tail(out)
      expected = Map.new(pairs) |> Map.merge(%{"bin:utf8" => "abc", "bin:empty" => ""})

      s = start_store!(data)
      assert LiteStash.count(s) == {:ok, map_size(expected)}

      for {key, value} <- expected do
        assert LiteStash.get(s, key) === {:ok, value}, "key #{inspect(key)}"
      end

      assert LiteStash.mget(s, Map.keys(expected)) === {:ok, expected}
      # === can't tell -0.0 from 0.0 before OTP 27; the bits can.
      {:ok, negative_zero} = LiteStash.get(s, "float:-0.0")
      assert <<negative_zero::float>> == <<0x8000000000000000::64>>
    end
  end

  describe "contract.py writes, LiteStash compares and sets" do
    test "expected equal to what get returned always matches", %{tmp_dir: tmp, python: python} do
      data = Path.join(tmp, "data")

      pairs = [
        {"float:nan", :nan},
        {"float:inf", :infinity},
        {"float:-inf", :neg_infinity},
        {"list:specials", [:nan, :infinity, :neg_infinity, 0.5]},
        {"map:nan", %{"x" => :nan}},
        {"map:special values", %{"nan" => :nan, 1 => :neg_infinity}}
      ]

      {out, status} =
        contract(python, ["write", data, write!(tmp, "d.json", TaggedJSON.encode!(pairs))])

      assert status == 0, tail(out)

      raw = ~s({"bin:utf8": {"bin": "YWJj"}, "bin:in map": {"map": [["k", {"bin": "YWJj"}]]}})
      {out, status} = contract(python, ["write", data, write!(tmp, "raw.json", raw)])
      assert status == 0, tail(out)

      s = start_store!(data)

      for key <- Enum.map(pairs, &elem(&1, 0)) ++ ["bin:utf8", "bin:in map"] do
        {:ok, read} = LiteStash.get(s, key)
        assert LiteStash.compare_and_set(s, key, read, "replaced") == :ok, key
        assert LiteStash.get(s, key) == {:ok, "replaced"}
      end
    end
  end

  describe "contract.py and LiteStash write one data dir at the same time" do
    test "both read all of both sides' keys and every shard passes integrity_check",
         %{tmp_dir: tmp, python: python} do
      data = Path.join(tmp, "data")

      python_pairs =
        Enum.map(0..2_999, &{"py:#{&1}", %{"side" => "python", "i" => &1, "f" => &1 / 4}})

      data_json = write!(tmp, "python.json", TaggedJSON.encode!(python_pairs))

      # Both start on a fresh dir at once (each may create shard files the
      # other is creating); the Python writer commits one key per
      # transaction while LiteStash sets one key at a time (one transaction
      # each) until it has 3,000 and the Python writer has exited (at most
      # 20,000). LiteStash pauses 1 ms every 10 sets, as an application does
      # other work: in a tight loop it would starve the Python writer, whose
      # SQLite busy handler polls with growing sleeps.
      writer = Task.async(fn -> contract(python, ["write", data, data_json]) end)
      s = start_store!(data)
      written = write_while_alive(s, writer.pid, 0)
      {out, status} = Task.await(writer, 60_000)
      assert status == 0, tail(out)
      assert written >= 3_000

      ours = Enum.map(0..(written - 1), &{"ls:#{&1}", ls_value(&1)})
      expected = Map.new(python_pairs ++ ours)
      keys = Map.keys(expected)

      # Both sides read every key while the store is still open.
      assert LiteStash.mget(s, keys) === {:ok, expected}
      keys_json = write!(tmp, "keys.json", TaggedJSON.encode_keys!(keys))
      {out, status} = contract(python, ["read", data, keys_json], stderr_to_stdout: false)
      assert status == 0
      assert TaggedJSON.decode!(out) === expected

      :ok = LiteStash.stop(s)
      {report, 0} = System.cmd(python, ["-c", @shard_report, data], stderr_to_stdout: true)
      integrity = Regex.scan(~r/^integrity (\S+): (.*)$/m, report, capture: :all_but_first)
      assert length(integrity) == 16, report
      assert Enum.all?(integrity, fn [_file, check] -> check == "ok" end), report

      # The commits interleaved: each side committed rows while the other was writing.
      [[py_rows, py_inside]] =
        Regex.scan(~r/^side py: (\d+) rows, (\d+) inside/m, report, capture: :all_but_first)

      [[ls_rows, ls_inside]] =
        Regex.scan(~r/^side ls: (\d+) rows, (\d+) inside/m, report, capture: :all_but_first)

      assert {String.to_integer(py_rows), String.to_integer(ls_rows)} == {3_000, written}
      assert String.to_integer(py_inside) >= 100, report
      assert String.to_integer(ls_inside) >= 100, report

      expected_json = write!(tmp, "expected.json", TaggedJSON.encode!(expected))
      {out, status} = contract(python, ["verify", data, expected_json, "--exact"])
      assert status == 0, tail(out)
      assert out =~ "verify: #{map_size(expected)} keys checked, 0 problems"
    end
  end

  describe "contract.py selftest" do
    test "passes against the project's copy of the contract in test/fixtures/contract",
         %{python: python} do
      {out, status} = contract(python, ["selftest"])
      assert status == 0, tail(out)
      assert out =~ ~r/^selftest: \d+ checks, 0 failures$/m
    end
  end

  ## Running contract.py

  defp contract(python, args, opts \\ []) do
    # selftest reads the contract's vectors and fixture from here, never from
    # the shared original.
    contract_dir = Path.dirname(contract_path("vectors.json"))

    System.cmd(python, [@contract_py | args],
      env: [{"LITESTASH_CONTRACT_DIR", contract_dir}],
      stderr_to_stdout: Keyword.get(opts, :stderr_to_stdout, true)
    )
  end

  defp write!(dir, name, text) do
    path = Path.join(dir, name)
    File.write!(path, text)
    path
  end

  # verify prints one line per problem: keep a failure message readable.
  defp tail(out), do: out |> String.split("\n") |> Enum.take(-40) |> Enum.join("\n")

  defp write_while_alive(store, pid, i) when i < 20_000 do
    if i >= 3_000 and not Process.alive?(pid) do
      i
    else
      if rem(i, 10) == 9, do: Process.sleep(1)
      :ok = LiteStash.set(store, "ls:#{i}", ls_value(i))
      write_while_alive(store, pid, i + 1)
    end
  end

  defp write_while_alive(_store, _pid, i), do: i

  defp ls_value(i), do: %{"side" => "litestash", "i" => i, "f" => i / 8}

  ## The data sets

  # {key, value written by LiteStash, value stored and read back}. Atoms are
  # stored as strings; everything else as it is.
  defp value_cases do
    same =
      [
        {"nil", nil},
        {"true", true},
        {"false", false}
      ] ++
        Enum.map(
          [0, 1, 127, 128, 255, 256, 65_535, 65_536, 4_294_967_295, 4_294_967_296] ++
            [9_223_372_036_854_775_807, 9_223_372_036_854_775_808, 18_446_744_073_709_551_615] ++
            [-1, -32, -33, -128, -129, -32_768, -32_769, -2_147_483_648, -2_147_483_649] ++
            [-9_223_372_036_854_775_808],
          &{"int:#{&1}", &1}
        ) ++
        Enum.map(
          [0.0, 1.0, 1.5, -2.5, 0.1, -0.1, 3.141592653589793, 123_456_789.0, 1.0e100] ++
            [-1.0e-100, 5.0e-324, 2.2250738585072014e-308, 1.7976931348623157e308] ++
            [-1.7976931348623157e308],
          &{"float:#{&1}", &1}
        ) ++
        [
          {"float:-0.0", negative_zero()},
          {"str:empty", ""},
          {"str:hello", "hello"},
          {"str:utf8", "héllo wörld ✓ 日本語 🔑😀"},
          {"str:controls", "nul \u0000 tab \t lf \n cr \r quote \" backslash \\ del \u007f"},
          {"str:max code point", "\u{10FFFF}\u{FEFF}"},
          {"str:31", String.duplicate("s", 31)},
          {"str:32", String.duplicate("s", 32)},
          {"str:255", String.duplicate("s", 255)},
          {"str:256", String.duplicate("é", 128)},
          {"str:65535", String.duplicate("t", 65_535)},
          {"str:65536", String.duplicate("t", 65_536)},
          {"bin:ff00fe", <<255, 0, 254>>},
          {"bin:all bytes", :binary.list_to_bin(Enum.to_list(0..255))},
          {"bin:surrogate", <<0xED, 0xA0, 0x80>>},
          {"bin:overlong", <<0xC0, 0x80>>},
          {"bin:truncated", "abc" <> <<0xE2, 0x82>>},
          {"bin:255", :binary.copy(<<0xFF>>, 255)},
          {"bin:256", :binary.copy(<<0xFF>>, 256)},
          {"bin:65536", :binary.copy(<<0xFE, 0xFF>>, 32_768)},
          {"list:empty", []},
          {"list:mixed", [1, "two", 3.0, nil, true, <<255>>, [], %{}]},
          {"list:15", Enum.to_list(1..15)},
          {"list:16", Enum.to_list(1..16)},
          {"list:65536", Enum.to_list(1..65_536)},
          {"list:vector", [0.1, 0.5, 0.9]},
          {"list:512 levels", Enum.reduce(1..511, [], fn _, acc -> [acc] end)},
          {"map:empty", %{}},
          {"map:simple", %{"name" => "Alice", "score" => 99}},
          {"map:nested", %{"a" => [1, %{"b" => [nil, %{"c" => "d"}]}], "e" => %{}}},
          {"map:int keys",
           %{
             1 => "one",
             -1 => "minus one",
             18_446_744_073_709_551_615 => "max",
             -9_223_372_036_854_775_808 => "min"
           }},
          {"map:scalar keys",
           %{
             1 => "int",
             1.0 => "float",
             true => "true",
             false => "false",
             nil => "nil",
             "1" => "str",
             <<255>> => "bin"
           }},
          {"map:15", Map.new(1..15, &{"k#{&1}", &1})},
          {"map:16", Map.new(1..16, &{"k#{&1}", &1})},
          {"map:65536", Map.new(1..65_536, &{&1, -&1})}
        ] ++ vector_cases()

    atoms = [
      {"atom:plain", :hello, "hello"},
      {"atom:latin-1", :"héllo wörld", "héllo wörld"},
      {"atom:nan is a name", :nan, "nan"},
      {"atom:in a list", [:a, :b, nil, true, false], ["a", "b", nil, true, false]},
      {"atom:map keys", %{name: "Alice", score: 99}, %{"name" => "Alice", "score" => 99}},
      {"atom:nested", %{outer: %{inner: [:x, %{deep: :y}]}},
       %{"outer" => %{"inner" => ["x", %{"deep" => "y"}]}}}
    ]

    Enum.map(same, fn {key, value} -> {key, value, value} end) ++ atoms
  end

  # Every value of the contract's vectors.json.
  defp vector_cases do
    vectors = contract_path("vectors.json") |> File.read!() |> LiteStash.Test.JSON.decode!()

    for %{"name" => name, "elixir" => source} <- vectors["values"] do
      {value, _} = Code.eval_string(source)
      {"vector:#{name}", value}
    end
  end

  defp negative_zero do
    <<zero::float>> = <<0x8000000000000000::64>>
    zero
  end

  # One key of every length from 1 to 1024 bytes, of 1- to 4-byte characters
  # (padded with ASCII where the next character doesn't fit), and a few more.
  @chars ["é", "中", "🔑", "a", "ж", "€", "😀", "~", "\u{10FFFF}", " "]
  defp unicode_keys do
    keys = Enum.map(1..1024, &unicode_key/1)
    true = Enum.with_index(keys, 1) |> Enum.all?(fn {key, n} -> byte_size(key) == n end)

    keys ++
      [
        String.duplicate("🔑", 256),
        String.duplicate("é", 512),
        "key with nul \u0000 inside",
        "tab\tlf\ncr\rquote\"backslash\\",
        "\u{FEFF}byte order mark"
      ]
  end

  defp unicode_key(bytes) do
    @chars
    |> Stream.cycle()
    |> Stream.drop(rem(bytes, length(@chars)))
    |> Enum.reduce_while({[], bytes}, fn
      _char, {acc, 0} ->
        {:halt, {acc, 0}}

      char, {acc, left} when byte_size(char) <= left ->
        {:cont, {[acc, char], left - byte_size(char)}}

      _char, {acc, left} ->
        {:cont, {[acc, "k"], left - 1}}
    end)
    |> elem(0)
    |> IO.iodata_to_binary()
  end

  defp bulk_value(i) do
    case rem(i, 6) do
      0 -> i
      1 -> -i * 1_000_003
      2 -> i / 8
      3 -> "value #{i} ✓"
      4 -> [i, "x", nil, <<255, rem(i, 256)>>]
      5 -> %{"i" => i, "even" => rem(i, 2) == 0}
    end
  end
end
