"""Tabular datasources the way Amazon ML defined them: CSV data + a data schema, DataRearrangement
splits, datasource statistics, and recipes that turn the typed columns into model features."""
