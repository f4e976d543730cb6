"""`qtrack dashboard`: a Streamlit app over the tracking store (read only), with the benchmark JSON
files under results/benchmarks/ as the fallback when MLflow can't be reached."""
