"""Pure clinical functions over records, parameters and `now`: features, facts, dose arithmetic, order review.

No I/O, no clock: see README.md in this folder."""
