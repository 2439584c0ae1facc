__all__ = ['ttypes', 'constants', 'DialKV']
