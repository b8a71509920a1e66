"""The benchmark: what each configuration costs against the floor and the bare SDK (`python -m loadtest bench`)."""
