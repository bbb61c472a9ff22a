"""monitor/parsers"""
