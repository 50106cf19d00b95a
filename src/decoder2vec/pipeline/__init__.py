"""Runs recipes: runner.py's Pipeline chains training stages and evaluates after each; demo.py
(`decoder2vec demo`) and languages.py (`decoder2vec adapt`) are its presets."""
