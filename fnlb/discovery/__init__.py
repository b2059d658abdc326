"""fnlb.discovery"""
