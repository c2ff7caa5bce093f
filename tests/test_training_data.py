"""The churn data generator, the leakage-free split, and preprocessing's refusal of bad raw data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn_data import generate_customers, read_raw, split_of
from feature_schema import load_schema
from preprocess import main as preprocess_main
from training_env import DataError, run_job

SCHEMA = load_schema()


def write_raw(root: Path, frame: pd.DataFrame, name: str = "customers.csv") -> Path:
    raw = root / "processing" / "input" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    path = raw / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return raw


def test_generator_is_seeded_and_realistic() -> None:
    first, again, other = generate_customers(5000, seed=3), generate_customers(5000, seed=3), generate_customers(5000)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)
    assert list(first.columns) == list(SCHEMA.raw_columns)
    assert 0.15 < first["churned"].mean() < 0.35
    assert first["customer_id"].is_unique
    # Month-to-month customers churn more than two-year contracts, as in real churn data.
    by_contract = first.groupby("contract_months")["churned"].mean()
    assert by_contract[1] > 2 * by_contract[24]


def test_generated_data_passes_the_schema(tmp_path: Path) -> None:
    raw = write_raw(tmp_path, generate_customers(2000))
    frame = read_raw(raw, SCHEMA)
    assert len(frame) == 2000


def test_split_is_by_customer_stable_and_leak_free() -> None:
    data = generate_customers(4000)
    repeated = pd.concat([data, data.sample(frac=0.5, random_state=1)])  # customers with several events
    split = split_of(repeated["customer_id"], seed=42, fractions=(0.7, 0.15))
    per_customer = pd.Series(split).groupby(repeated["customer_id"].to_numpy()).nunique()
    assert per_customer.max() == 1  # no customer in two splits
    shares = np.bincount(split_of(data["customer_id"], 42, (0.7, 0.15)), minlength=3) / len(data)
    assert shares == pytest.approx([0.7, 0.15, 0.15], abs=0.03)
    shuffled = data.sample(frac=1.0, random_state=9)
    assert (
        split_of(shuffled["customer_id"], 42, (0.7, 0.15))
        == split_of(data["customer_id"], 42, (0.7, 0.15))[shuffled.index]
    ).all()
    assert (split_of(data["customer_id"], 43, (0.7, 0.15)) != split_of(data["customer_id"], 42, (0.7, 0.15))).any()


def test_preprocess_writes_shards_test_baseline_and_summary(sagemaker_root: Path) -> None:
    write_raw(sagemaker_root, generate_customers(3000, seed=1), "part-a.csv")
    write_raw(sagemaker_root, generate_customers(1000, seed=2), "part-b.parquet")
    assert run_job(preprocess_main, ["--shards", "3"]) == 0
    output = sagemaker_root / "processing" / "output"
    for split in ("train", "validation"):
        assert sorted(p.name for p in (output / split).iterdir()) == [f"part-0000{i}.csv" for i in range(3)]
    first_line = (output / "train" / "part-00000.csv").read_text().splitlines()[0].split(",")
    assert len(first_line) == len(SCHEMA.training_columns)
    assert first_line[0] in ("0", "1")  # label first, no header
    baseline = pd.read_csv(output / "baseline" / "baseline.csv")
    assert list(baseline.columns) == list(SCHEMA.model_features)
    summary = json.loads((output / "summary.json").read_text())
    assert sum(int(s["rows"]) for s in summary.values()) == 4000
    test_rows = len((output / "test" / "test.csv").read_text().splitlines())
    assert test_rows == summary["test"]["rows"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["tenure"]), "missing column(s) tenure"),
        (
            lambda f: f.assign(monthly_charges=f["monthly_charges"].astype(str).where(f.index != 4, "lots")),
            "line 6: monthly_charges = 'lots' is not a number",
        ),
        (
            lambda f: f.assign(event_time=f["event_time"].where(f.index != 2, "yesterday")),
            "line 4: event_time = 'yesterday' is not an ISO 8601 time",
        ),
        (lambda f: f.assign(churned=f["churned"].where(f.index != 7, 2)), "line 9: churned = 2; it must be 0 or 1"),
        (lambda f: f.assign(churned=f["churned"].astype(float).where(f.index != 3)), "line 5: churned is empty"),
        (lambda f: f.assign(tenure=f["tenure"].where(f.index != 0, -5)), "line 2: tenure = -5 is below 0"),
        (
            lambda f: f.assign(has_phone=f["has_phone"].where(f.index != 1, 3)),
            "line 3: has_phone = 3; it must be 0 or 1",
        ),
        (lambda f: f.assign(customer_id=f["customer_id"].where(f.index != 5, "")), "line 7 has no customer_id"),
    ],
)
def test_bad_raw_data_fails_preprocess_with_the_reason(sagemaker_root: Path, change, message: str) -> None:
    write_raw(sagemaker_root, change(generate_customers(50)))
    assert run_job(preprocess_main, []) == 2
    failure = (sagemaker_root / "output" / "failure").read_text()
    assert failure.startswith("Bad data: customers.csv")
    assert message in failure


def test_missing_feature_values_are_kept_as_missing(tmp_path: Path) -> None:
    frame = generate_customers(20)
    frame["support_tickets"] = frame["support_tickets"].astype(float).where(frame.index != 4)
    assert np.isnan(read_raw(write_raw(tmp_path, frame), SCHEMA)["support_tickets"][4])


def test_empty_input_is_named(sagemaker_root: Path) -> None:
    (sagemaker_root / "processing" / "input" / "raw").mkdir(parents=True)
    (sagemaker_root / "processing" / "input" / "raw" / "notes.txt").write_text("not data")
    assert run_job(preprocess_main, []) == 2
    failure = (sagemaker_root / "output" / "failure").read_text()
    assert "no .csv, .csv.gz or .parquet files" in failure
    assert "notes.txt" in failure


def test_bad_fractions_are_a_configuration_error(sagemaker_root: Path) -> None:
    write_raw(sagemaker_root, generate_customers(50))
    assert run_job(preprocess_main, ["--train-fraction", "0.9", "--validation-fraction", "0.2"]) == 2
    assert "Bad configuration" in (sagemaker_root / "output" / "failure").read_text()


def test_read_raw_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_raw(tmp_path / "nowhere", SCHEMA)
