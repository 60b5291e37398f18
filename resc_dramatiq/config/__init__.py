"""Rules configuration: files in resc's layouts, validated once into frozen models."""
