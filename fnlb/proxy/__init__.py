"""fnlb.proxy"""
