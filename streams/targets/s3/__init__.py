"""The S3 lake target: object layout, file formats, the object-store port and the DDL for query engines."""
