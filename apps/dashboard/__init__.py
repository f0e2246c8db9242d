"""The Streamlit review dashboard (``pwb dashboard``): runs, cohorts, personas, generations and human labels."""
