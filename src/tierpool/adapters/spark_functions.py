"""Spark SQL run once per session so that translated DuckDB SQL means the same thing on Spark.

Pure text (no pyspark import): :data:`SESSION_SQL` is executed by the Spark adapter at connect,
in order (later functions call earlier ones). Every function is a deterministic Spark SQL UDF
(``CREATE TEMPORARY FUNCTION ... RETURN <expr>``) whose result equals DuckDB's for every input,
NaN, infinities, NULL and the sign of zero included; ``tests/unit/test_spark_dialect.py`` checks
each against DuckDB. Names carry a ``tierpool_`` prefix so no Spark builtin is shadowed.
"""

from __future__ import annotations

_NAN = "CAST('NaN' AS DOUBLE)"
_INF = "CAST('Infinity' AS DOUBLE)"
_NEG_INF = "CAST('-Infinity' AS DOUBLE)"


# Arguments of a nested SQL function call are evaluated eagerly, even inside a CASE branch that
# is not taken: every function below must therefore be total (no ANSI error for any input),
# hence try_cast, and the clamping of values that a guard already excludes.
_2P52 = "4503599627370496D"  # doubles at least this large are integral
_CLAMPED = f"least(greatest(x, -{_2P52}), {_2P52})"


def _fn(signature: str, returns: str, body: str) -> str:
    return f"CREATE OR REPLACE TEMPORARY FUNCTION {signature} RETURNS {returns} RETURN {body}"


# Stirling's series for ln Gamma(x), x >= 10, to the x^-13 term: truncation error < 3e-17 there.
_STIRLING = (
    "(x - 0.5D) * ln(x) - x + 0.9189385332046728D + (1D / x) * (1D / 12 - (1D / (x * x)) * "
    "(1D / 360 - (1D / (x * x)) * (1D / 1260 - (1D / (x * x)) * (1D / 1680 - (1D / (x * x)) * "
    "(1D / 1188 - (1D / (x * x)) * (691D / 360360 - (1D / (x * x)) / 156))))))"
)

# Digits of a positive double as DuckDB prints them: the SHORTEST decimal that reads back as the
# same double (DuckDB and Python's repr use shortest round-trip digits; Java 17's
# Double.toString sometimes prints one digit more). format_number with a scientific
# DecimalFormat pattern rounds half-even on the exact binary value (JDK-7131459), so the first
# digit count whose rounding reads back is the shortest representation.
_PATTERNS = ["0E0"] + ["0." + "0" * k + "E0" for k in range(1, 17)]


def _shortest(value: str) -> str:
    """CASE picking the first digit count whose correct rounding of ``value`` reads back as it.

    Plain expressions only (no nested function calls): CASE stays lazy and the plan small.
    """
    tries = " ".join(
        f"WHEN try_cast(format_number({value}, '{p}') AS DOUBLE) = {value} "
        f"THEN format_number({value}, '{p}')"
        for p in _PATTERNS
    )
    return f"CASE {tries} ELSE format_number({value}, '{_PATTERNS[-1]}') END"


# DecimalFormat takes an integral double's digits for inexact and breaks their exact ties
# upward (format_number(25D, '0E00') = '3E01'; C's printf: '2e+01'): printf formats integral
# values as DECIMAL(38, 0), whose digits are exact. (The shortest-digits search is immune: a
# tie there is never a decimal that reads back.)
_INTEGRAL = "x <> 0 AND abs(x) < 1e37D AND x = rint(x)"
_NO_TEXT = (
    "raise_error('tierpool: DuckDB prints this double differently (NaN sign, subnormal digits); "
    "Spark cannot reproduce its text')"
)

SESSION_SQL: tuple[str, ...] = (
    # ANSI mode: integer overflow and invalid casts raise errors, as they do in DuckDB (Spark
    # 4's default, pinned here because the translation relies on it).
    "SET spark.sql.ansi.enabled = true",
    # DuckDB TIMESTAMP is timezone-naive: map it to TIMESTAMP_NTZ and compute in UTC, so
    # date_trunc and casts between timestamp kinds never shift a value.
    "SET spark.sql.session.timeZone = UTC",
    "SET spark.sql.timestampType = TIMESTAMP_NTZ",
    # Parquet timestamps written without a zone (DuckDB's TIMESTAMP) read back as TIMESTAMP_NTZ
    "SET spark.sql.parquet.inferTimestampNTZ.enabled = true",
    # Constraint propagation infers filters from every alias of every UNION ALL branch; on
    # coverage_report (eight groupings unioned, NULL-padded, joined on eight <=> keys) it built a
    # filter past the JVM's 64 KB method limit and the node took 343 s instead of seconds.
    "SET spark.sql.constraintPropagation.enabled = false",
    # DuckDB 2 divides as IEEE doubles: x/0 is +-inf, 0/0 NaN (Spark: NULL, or an error under
    # ANSI). The sign of a zero divisor is read from its text ('-0.0').
    _fn(
        "tierpool_div(a DOUBLE, b DOUBLE)",
        "DOUBLE",
        f"CASE WHEN a IS NULL OR b IS NULL THEN NULL WHEN b <> 0 THEN a / b "
        f"WHEN isnan(a) OR a = 0 THEN {_NAN} "
        f"WHEN (a > 0) = (CAST(b AS STRING) NOT LIKE '-%') THEN {_INF} ELSE {_NEG_INF} END",
    ),
    # DuckDB: ln(0) = -inf, ln(x < 0) = NaN; Spark returns NULL for both.
    _fn(
        "tierpool_ln(x DOUBLE)",
        "DOUBLE",
        f"CASE WHEN x > 0 THEN ln(x) WHEN x = 0 THEN {_NEG_INF} WHEN x < 0 THEN {_NAN} END",
    ),
    # NaN compares greater than every number in Spark, so this is false for NaN and +-inf.
    _fn("tierpool_isfinite(x DOUBLE)", "BOOLEAN", f"abs(x) < {_INF}"),
    # C's round/ceil/floor keep the sign of a zero result (-0.0); x * 0 carries it.
    _fn(
        "tierpool_signed_zero(x DOUBLE, r DOUBLE)",
        "DOUBLE",
        "CASE WHEN r = 0 THEN x * 0D ELSE r END",
    ),
    # DuckDB ceil/floor of a DOUBLE (or integer) is a DOUBLE; Spark's is a BIGINT that overflows
    # past 2^63 and maps NaN to 0. Doubles >= 2^52 in magnitude are already integral.
    _fn(
        "tierpool_ceil(x DOUBLE)",
        "DOUBLE",
        f"CASE WHEN abs(x) < {_2P52} THEN tierpool_signed_zero(x, CAST(ceil({_CLAMPED}) AS "
        "DOUBLE)) "
        "ELSE x END",
    ),
    _fn(
        "tierpool_floor(x DOUBLE)",
        "DOUBLE",
        f"CASE WHEN abs(x) < {_2P52} THEN tierpool_signed_zero(x, CAST(floor({_CLAMPED}) AS "
        "DOUBLE)) "
        "ELSE x END",
    ),
    # DuckDB 2 rounds a DOUBLE to n >= 0 decimals EXACTLY while |x| * 10^n < 2^52: half away
    # from zero on the exact binary value (round(2.675, 2) = 2.67 although 2.675 * 100 is 267.5
    # in floating point; Spark's round(double) rounds the decimal text half-up: 2.68); above
    # that it returns x * 10^n / 10^n (found by comparing with DuckDB 2.0; x if that is inf).
    # The exact product a * 10^n is p + err (Dekker's two-product: 10^n is exact for n <= 22,
    # splitting needs no fma); a tie p = k + 0.5 goes up unless the true product is below it.
    _fn("tierpool_split(a DOUBLE)", "DOUBLE", "134217729D * a - (134217729D * a - a)"),
    _fn(
        "tierpool_product_err(a DOUBLE, b DOUBLE, ah DOUBLE, bh DOUBLE)",
        "DOUBLE",
        "((ah * bh - a * b) + ah * (b - bh) + (a - ah) * bh) + (a - ah) * (b - bh)",
    ),
    _fn(
        "tierpool_round_abs(a DOUBLE, m DOUBLE, err DOUBLE)",
        "DOUBLE",
        f"(CAST(floor(least(a * m, {_2P52})) AS DOUBLE) + CASE WHEN a * m - "
        f"CAST(floor(least(a * m, {_2P52})) AS DOUBLE) > 0.5D OR (a * m - "
        f"CAST(floor(least(a * m, {_2P52})) AS DOUBLE) = 0.5D AND err >= 0) THEN 1 ELSE 0 END) / m",
    ),
    _fn(
        "tierpool_round(x DOUBLE, n INT)",
        "DOUBLE",
        f"CASE WHEN isnan(x) THEN x WHEN abs(x) * power(10, n) < {_2P52} THEN "
        "tierpool_signed_zero(x, "
        "sign(x) * tierpool_round_abs(abs(x), power(10, n), tierpool_product_err(abs(x), "
        "power(10, n), tierpool_split(abs(x)), tierpool_split(power(10, n))))) "
        f"WHEN abs(x * power(10, n)) = {_INF} THEN x ELSE x * power(10, n) / power(10, n) END",
    ),
    # ln|Gamma(x)| as DuckDB's lgamma (glibc): Stirling for x >= 10, shifted by ten factors
    # below, -ln(x) - gamma*x for tiny x (the product would underflow), the reflection formula
    # for x < 0 (sin taken of the distance to the nearest integer, so it stays accurate), +inf
    # at the poles. Relative error < 2e-14 against glibc (|value| > 0.5), absolute < 2e-14 near
    # the roots 1 and 2.
    _fn("tierpool_lgamma_big(x DOUBLE)", "DOUBLE", _STIRLING),
    _fn(
        "tierpool_lgamma_pos(x DOUBLE)",
        "DOUBLE",
        "CASE WHEN x < 1e-8 THEN -ln(x) - 0.5772156649015329D * x "
        "WHEN x >= 10 THEN tierpool_lgamma_big(greatest(x, 10D)) "
        "ELSE tierpool_lgamma_big(greatest(x + 10, 10D)) - ln(x * (x + 1) * (x + 2) * (x + 3) * "
        "(x + 4) * (x + 5)"
        " * (x + 6) * (x + 7) * (x + 8) * (x + 9)) END",
    ),
    _fn(
        "tierpool_lgamma(x DOUBLE)",
        "DOUBLE",
        f"CASE WHEN isnan(x) THEN x WHEN abs(x) = {_INF} THEN {_INF} "
        "WHEN x > 0 THEN tierpool_lgamma_pos(x) "
        f"WHEN x = tierpool_floor(x) THEN {_INF} "
        "ELSE ln(pi() / sin(pi() * CASE WHEN x > -0.5 THEN -x "
        "ELSE least(x - tierpool_floor(x), 1 - (x - tierpool_floor(x))) END)) "
        "- tierpool_lgamma_pos(1 - x) END",
    ),
    # printf('%.<n>e', x) with C's rounding (half-even on the exact binary value) and C's
    # spelling: 'e+05', 'nan', 'inf'. pattern is the DecimalFormat pattern, e.g. '0.0E00'.
    _fn(
        "tierpool_printf_e(x DOUBLE, pattern STRING)",
        "STRING",
        f"CASE WHEN isnan(x) OR (x <> 0 AND abs(x) < 2.2250738585072014E-308D) THEN {_NO_TEXT} "
        f"WHEN x = {_INF} THEN 'inf' WHEN x = {_NEG_INF} THEN '-inf' "
        "ELSE regexp_replace(replace(CASE WHEN "
        f"{_INTEGRAL} THEN format_number(CAST(x AS DECIMAL(38, 0)), pattern) "
        "ELSE format_number(x, pattern) END, 'E-', 'e-'), 'E', 'e+') END",
    ),
    # CAST(double AS VARCHAR) as DuckDB prints it (Python's repr layout): shortest digits, plain
    # notation for 1e-4 <= |x| < 1e16 with at least one decimal ('3.0'), else 'd.ddde+XX'.
    _fn(  # digits d (k of them) and exponent e as 'd.ddE<e>'
        "tierpool_sci(d STRING, e INT)",
        "STRING",
        "concat(substr(d, 1, 1), CASE WHEN length(d) > 1 THEN concat('.', substr(d, 2)) ELSE '' "
        "END, "
        "'E', e)",
    ),
    _fn(  # n = k-digit mantissa + 1, as text: a carry (99 -> 100) moves the exponent
        "tierpool_bump(n STRING, k INT, e INT)",
        "STRING",
        "tierpool_sci(substr(n, 1, k), CASE WHEN length(n) > k THEN e + 1 ELSE e END)",
    ),
    _fn(  # 'd.ddE<e>' -> the next decimal up with as many digits
        "tierpool_next_up(s STRING)",
        "STRING",
        "tierpool_bump(CAST(try_cast(replace(split_part(s, 'E', 1), '.', '') AS DECIMAL(38, 0)) "
        "+ 1 "
        "AS STRING), length(replace(split_part(s, 'E', 1), '.', '')), "
        "try_cast(split_part(s, 'E', 2) AS INT))",
    ),
    _fn("tierpool_shortest_rounded(a DOUBLE)", "STRING", _shortest("a")),
    # At a power of two the doubles below are twice as dense as above, so the nearest decimal
    # with one digit less can miss while the next one up reads back (checked for every power
    # of two against DuckDB): s has k digits, try next_up of the (k-1)-digit rounding.
    _fn(
        "tierpool_shortest_at(a DOUBLE, s STRING, k INT)",
        "STRING",
        "CASE WHEN k > 1 AND a = power(2D, round(log2(a))) AND "
        "try_cast(tierpool_next_up(format_number(a, "
        "CASE WHEN k = 2 THEN '0E0' ELSE concat('0.', repeat('0', k - 2), 'E0') END)) AS DOUBLE) "
        "= a "
        "THEN tierpool_next_up(format_number(a, CASE WHEN k = 2 THEN '0E0' "
        "ELSE concat('0.', repeat('0', k - 2), 'E0') END)) ELSE s END",
    ),
    _fn(
        "tierpool_shortest_of(a DOUBLE, s STRING)",
        "STRING",
        "tierpool_shortest_at(a, s, length(replace(split_part(s, 'E', 1), '.', '')))",
    ),
    _fn(
        "tierpool_shortest(a DOUBLE)",
        "STRING",
        "tierpool_shortest_of(a, tierpool_shortest_rounded(a))",
    ),
    _fn(
        "tierpool_layout(d STRING, e INT)",
        "STRING",
        "CASE WHEN e < -4 OR e >= 16 THEN concat(substr(d, 1, 1), "
        "CASE WHEN length(d) > 1 THEN concat('.', substr(d, 2)) ELSE '' END, 'e', "
        "CASE WHEN e < 0 THEN '-' ELSE '+' END, CASE WHEN abs(e) < 10 THEN '0' ELSE '' END, "
        "abs(e)) "
        "WHEN e < 0 THEN concat('0.', repeat('0', -e - 1), d) "
        "WHEN e >= length(d) - 1 THEN concat(d, repeat('0', e - length(d) + 1), '.0') "
        "ELSE concat(substr(d, 1, e + 1), '.', substr(d, e + 2)) END",
    ),
    _fn(  # 'd.dddE<e>' -> digits and exponent
        "tierpool_layout_sci(s STRING)",
        "STRING",
        "tierpool_layout(replace(split_part(s, 'E', 1), '.', ''), try_cast(split_part(s, 'E', 2) "
        "AS INT))",
    ),
    _fn(
        "tierpool_double_text(x DOUBLE)",
        "STRING",
        f"CASE WHEN isnan(x) THEN {_NO_TEXT} WHEN x = {_INF} THEN 'inf' WHEN x = {_NEG_INF} THEN "
        "'-inf' "
        "ELSE concat(CASE WHEN x < 0 OR CAST(x AS STRING) = '-0.0' THEN '-' ELSE '' END, "
        "tierpool_layout_sci(tierpool_shortest(abs(x)))) END",
    ),
    # CAST(x AS VARCHAR) when x's type is only known at run time: types whose text is the
    # same on both engines pass, DOUBLE is reprinted, anything else stops the query rather
    # than return a different text.
    _fn(
        "tierpool_text(t STRING, s STRING)",
        "STRING",
        "CASE WHEN s IS NULL THEN NULL WHEN t = 'double' THEN tierpool_double_text(try_cast(s AS "
        "DOUBLE)) "
        "WHEN t IN ('string', 'tinyint', 'smallint', 'int', 'bigint', 'boolean', 'date', "
        "'timestamp_ntz', 'void') OR t LIKE 'decimal(%' OR t LIKE 'varchar(%' OR t LIKE 'char(%' "
        "THEN s ELSE raise_error(concat('tierpool: no DuckDB-compatible text for a value of type "
        "', t)) END",
    ),
)
