"""Runs recipes: runner.py's Pipeline chains training stages and evaluates after each; demo.py
(`decoder2vec demo`) and languages.py (`decoder2vec adapt`) run it with their row of presets.py's
PRESETS (recipe folders, suites, rows, runs folder)."""
