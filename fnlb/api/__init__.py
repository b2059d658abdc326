"""fnlb.api"""
