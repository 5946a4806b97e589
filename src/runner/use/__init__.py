"""Using a trained run: what a strategy loads (`choice`), the prediction engine (`predict`), the
self-contained export folder and `runner.load` (`export`), and `runner predict`'s output file (`output`).
"""
