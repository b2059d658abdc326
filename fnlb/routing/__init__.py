"""fnlb.routing"""
