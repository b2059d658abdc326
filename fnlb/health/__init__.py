"""fnlb.health"""
