"""The app's tabs and sidebars as Streamlit code, drawn by app.py (the page and the configuration
columns). Library logic lives in the workbench package (`workbench.columns`)."""
