"""fnlb.cluster"""
